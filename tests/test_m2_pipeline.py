from transformers import pipeline


def test_image_text_to_text_pipeline_captions_an_image_from_a_saved_folder(tmp_path, grid_model, image_processor_m2, rgb_image):
    grid_model.save_pretrained(tmp_path)
    image_processor_m2.save_pretrained(tmp_path)
    captioner = pipeline("image-text-to-text", model=str(tmp_path))
    out = captioner(rgb_image, text="", generate_kwargs={"max_new_tokens": 6})
    assert isinstance(out[0]["generated_text"], str)
    vocabulary = set(image_processor_m2.tokenizer.get_vocab())
    assert set(out[0]["generated_text"].split()) <= vocabulary
    batch = captioner([rgb_image, rgb_image.rotate(90)], text=["", ""], generate_kwargs={"max_new_tokens": 6})
    assert len(batch) == 2
