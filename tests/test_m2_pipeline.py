import PIL.Image
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


def test_a_transparent_image_captions_the_same_through_generate_and_the_pipeline_when_given_to_rgb(
        tmp_path, grid_model, image_processor_m2, rgb_image):
    """transformers' pipeline drops alpha before the processor runs; `to_rgb` (the README's advice) puts the image on
    white as `generate` through the processor does."""
    from hf_mmdl.processing.image_processing import to_rgb

    grid_model.save_pretrained(tmp_path)
    image_processor_m2.save_pretrained(tmp_path)
    captioner = pipeline("image-text-to-text", model=str(tmp_path))
    image = rgb_image.convert("RGBA")
    image.putalpha(PIL.Image.linear_gradient("L").resize(image.size))  # transparent at the top, opaque below
    ids = grid_model.generate(**image_processor_m2(images=image), max_new_tokens=6)
    through_generate = image_processor_m2.batch_decode(ids)[0]
    through_pipeline = captioner(to_rgb(image), text="", generate_kwargs={"max_new_tokens": 6})[0]["generated_text"]
    assert through_pipeline.strip() == through_generate.strip()
    # The image is one whose background changes this model's caption, so the equality above has weight.
    dropped_alpha = image_processor_m2.batch_decode(grid_model.generate(**image_processor_m2(images=image.convert("RGB")), max_new_tokens=6))[0]
    assert dropped_alpha != through_generate
