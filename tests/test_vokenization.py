"""Retrieval with the Vokenizer matcher: key stores, faiss indexes, per-token vokens, segmentation, corpora,
save/load, and revokenization to another tokenizer."""

from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import torch

from hf_mmdl import VokenizerModel, VokenizerProcessor
from hf_mmdl.processing import VokenizerImageProcessor, train_bert_wordpiece, train_byte_level_bpe
from hf_mmdl.vokenization import (
    IGNORE, INDEX_CONFIG_FILE, INDEX_FILE, KEYS_FILE, THUMBNAILS_FILE, ReVokenizer, Vokenizer, align_by_overlap,
    build_index, segment_lengths,
)

from test_vokenizer_modeling import tiny_config, tiny_text_config

SENTENCES = ["a small red circle sits left of a blue square", "the green star is above the white cross",
             "three yellow triangles and one purple circle", "a cat sleeps on the red mat near the door"]


@pytest.fixture(scope="module")
def processor():
    tokenizer = train_bert_wordpiece(SENTENCES * 3, vocab_size=120, model_max_length=64)
    return VokenizerProcessor(VokenizerImageProcessor.for_size(32), tokenizer)


@pytest.fixture(scope="module")
def model(processor):
    torch.manual_seed(0)
    return VokenizerModel(tiny_config(text_config=tiny_text_config(vocab_size=len(processor.tokenizer)))).eval()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [PIL.Image.fromarray((rng.random((36, 40, 3)) * 255).astype(np.uint8)) for _ in range(10)]


@pytest.fixture(scope="module")
def vokenizer(model, processor, images):
    dataset = datasets.Dataset.from_dict({"picture": images, "name": [f"img{i}.jpg" for i in range(10)]})
    return Vokenizer.build(model, processor, dataset, image_column="picture", id_column="name", batch_size=4,
                           show_progress=False)


def test_the_key_store_holds_the_models_unit_image_keys_with_ids(vokenizer, model, processor, images):
    assert vokenizer.keys.shape == (10, 8) and vokenizer.image_ids[3] == "img3.jpg"
    with torch.no_grad():
        expected = model.get_image_keys(processor(images=images)["pixel_values"]).numpy()
    np.testing.assert_allclose(vokenizer.keys, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vokenizer.keys, axis=1), 1, rtol=1e-5)
    from_list = Vokenizer.build(model, processor, images, batch_size=3, show_progress=False)
    np.testing.assert_allclose(from_list.keys, vokenizer.keys, rtol=1e-5, atol=1e-6)
    assert from_list.image_ids == [str(i) for i in range(10)]


def test_top1_vokens_are_the_argmax_of_the_relevance_and_specials_get_minus_100(vokenizer, model, processor):
    results = vokenizer.vokenize(SENTENCES[:2])
    for sentence, result in zip(SENTENCES[:2], results):
        encoded = processor(text=[sentence])
        assert result.input_ids == encoded["input_ids"][0].tolist()
        with torch.no_grad():
            relevance = model.get_text_keys(encoded["input_ids"]).numpy()[0] @ vokenizer.keys.T
        assert result.vokens[0] == result.vokens[-1] == IGNORE and np.isnan(result.scores[[0, -1]]).all()
        np.testing.assert_array_equal(result.vokens[1:-1], relevance[1:-1].argmax(-1))
        np.testing.assert_allclose(result.scores[1:-1], relevance[1:-1].max(-1), rtol=1e-5, atol=1e-6)
        assert result.tokens[0] == "[CLS]" and len(result.tokens) == len(result.offsets) == len(result.vokens)


def test_top_k_vokens_are_sorted_by_relevance(vokenizer):
    result = vokenizer.vokenize(SENTENCES[0], top_k=3)[0]
    assert result.vokens.shape == (len(result.tokens), 3)
    assert (np.diff(result.scores[1:-1], axis=1) <= 1e-6).all()
    np.testing.assert_array_equal(result.vokens[1:-1, 0], vokenizer.vokenize(SENTENCES[0])[0].vokens[1:-1])


def test_segment_lengths_are_near_equal_and_fit():
    assert segment_lengths(126, 126) == [126]
    assert segment_lengths(127, 126) == [64, 63]
    assert segment_lengths(300, 62) == [60] * 5
    assert segment_lengths(0, 126) == [0]


def test_over_long_sentences_are_cut_into_near_equal_framed_segments(vokenizer, model, processor):
    sentence = " ".join(SENTENCES * 12)  # ~ 400 word pieces, over the tiny BERT's 64 positions
    result = vokenizer.vokenize(sentence)[0]
    ids = processor.tokenizer(sentence)["input_ids"]
    assert vokenizer.max_tokens == 64 and result.input_ids == ids and len(result.vokens) == len(ids)
    content, lengths = ids[1:-1], segment_lengths(len(ids) - 2, 62)
    expected, start = [], 0
    for length in lengths:
        segment = torch.tensor([[processor.tokenizer.cls_token_id, *content[start:start + length],
                                 processor.tokenizer.sep_token_id]])
        with torch.no_grad():
            expected += list((model.get_text_keys(segment).numpy()[0, 1:-1] @ vokenizer.keys.T).argmax(-1))
        start += length
    assert len(lengths) > 1 and max(lengths) - min(lengths) <= 1
    np.testing.assert_array_equal(result.vokens[1:-1], expected)


def test_batching_does_not_change_vokens(vokenizer):
    one_by_one = [vokenizer.vokenize(s)[0].vokens for s in SENTENCES]
    batched = [r.vokens for r in vokenizer.vokenize(SENTENCES, batch_size=3)]
    for a, b in zip(one_by_one, batched):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_round_trip_with_the_index(vokenizer, tmp_path):
    vokenizer.save_pretrained(tmp_path)
    loaded = Vokenizer.from_pretrained(tmp_path)
    assert loaded.image_ids == vokenizer.image_ids and loaded.max_tokens == vokenizer.max_tokens
    np.testing.assert_array_equal(loaded.keys, vokenizer.keys)
    for a, b in zip(loaded.vokenize(SENTENCES), vokenizer.vokenize(SENTENCES)):
        np.testing.assert_array_equal(a.vokens, b.vokens)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert loaded.fingerprint == vokenizer.fingerprint


def test_an_ivf_index_matches_exact_search_when_probing_every_list_and_saves_its_lists(tmp_path):
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((2000, 16)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    queries = keys[:200] + 0.1 * rng.standard_normal((200, 16)).astype(np.float32)
    exact = build_index(keys, "flat")
    ivf = build_index(keys, "ivf", nlist=20, nprobe=20)
    np.testing.assert_array_equal(ivf.search(queries, 5)[1], exact.search(queries, 5)[1])
    ivf.nprobe = 4
    recall = (ivf.search(queries, 1)[1] == exact.search(queries, 1)[1]).mean()
    assert 0.9 <= recall  # near neighbours of keys fall in the lists nearest them
    assert build_index(keys, "ivf").nlist == min(int(4 * np.sqrt(2000)), 2000 // 39)


def test_a_vokenizer_with_an_ivf_index_reloads_it_and_takes_a_new_nprobe(model, processor, vokenizer, tmp_path):
    ivf = Vokenizer(model, processor, vokenizer.keys, index_type="ivf", nlist=2, nprobe=2)
    np.testing.assert_array_equal(ivf.vokenize(SENTENCES)[0].vokens, vokenizer.vokenize(SENTENCES)[0].vokens)
    ivf.save_pretrained(tmp_path)
    loaded = Vokenizer.from_pretrained(tmp_path, nprobe=1)
    assert loaded.index_type == "ivf" and loaded.index.nprobe == 1 and loaded.index.nlist == 2


def test_a_corpus_gets_an_aligned_vokens_column_cached_by_fingerprint(vokenizer, processor, tmp_path, monkeypatch):
    datasets.Dataset.from_dict({"sentence": SENTENCES, "label": [0, 1, 0, 1]}).save_to_disk(str(tmp_path / "corpus"))
    corpus = datasets.load_from_disk(str(tmp_path / "corpus"))
    vokenized = vokenizer.vokenize_dataset(corpus, text_column="sentence", batch_size=3, with_scores=True)
    assert vokenized.column_names == ["sentence", "label", "vokens", "voken_scores"]
    for row, result in zip(vokenized, vokenizer.vokenize(SENTENCES)):
        assert len(row["vokens"]) == len(processor.tokenizer(row["sentence"])["input_ids"])
        assert row["vokens"] == result.vokens.tolist()
    # A second run reads the datasets cache: the vokenizer is not called again.
    monkeypatch.setattr(Vokenizer, "vokenize", lambda *a, **k: pytest.fail("recomputed instead of read from cache"))
    again = vokenizer.vokenize_dataset(corpus, text_column="sentence", batch_size=3, with_scores=True)
    assert again["vokens"] == vokenized["vokens"]


def test_sharding_a_corpus_across_two_processes_gives_the_one_process_column(vokenizer, model, processor, tmp_path):
    datasets.Dataset.from_dict({"text": SENTENCES * 3}).save_to_disk(str(tmp_path / "corpus"))
    corpus = datasets.load_from_disk(str(tmp_path / "corpus"))
    threads = torch.get_num_threads()
    two = vokenizer.vokenize_dataset(corpus, batch_size=2, with_scores=True, num_proc=2)
    # One process, on an in-memory copy: its own map, not a read of the sharded run's cache (the column does not
    # depend on num_proc, nor does its fingerprint).
    one = vokenizer.vokenize_dataset(datasets.Dataset.from_dict(corpus.to_dict()), batch_size=2, with_scores=True)
    # Two shards were written, one per worker process.
    assert sorted(Path(f["filename"]).name[-len("00000_of_00002.arrow"):] for f in two.cache_files) == [
        "00000_of_00002.arrow", "00001_of_00002.arrow"]
    assert two["vokens"] == one["vokens"] and len(two) == len(corpus)
    for a, b in zip(two["voken_scores"], one["voken_scores"]):
        np.testing.assert_array_equal(np.array(a, dtype=float), np.array(b, dtype=float))  # NaN at specials in both
    assert torch.get_num_threads() == threads  # the workers' one-thread setting stays in the workers
    # An IVF index travels to the workers with its lists and nprobe.
    ivf = Vokenizer(model, processor, vokenizer.keys, index_type="ivf", nlist=2, nprobe=1)
    revokenizer = ReVokenizer(ivf, train_byte_level_bpe(SENTENCES * 3, vocab_size=300, model_max_length=64))
    assert (revokenizer.vokenize_dataset(corpus, batch_size=2, num_proc=2)["vokens"]
            == revokenizer.vokenize_dataset(corpus, batch_size=2)["vokens"])


def test_a_pickled_vokenizer_searches_as_the_original(model, processor, vokenizer):
    import pickle

    ivf = Vokenizer(model, processor, vokenizer.keys, index_type="ivf", nlist=2, nprobe=1)
    copy = pickle.loads(pickle.dumps(ivf))
    assert copy.index.nprobe == 1 and copy.index.nlist == 2 and copy.fingerprint == ivf.fingerprint
    for a, b in zip(copy.vokenize(SENTENCES, top_k=3), ivf.vokenize(SENTENCES, top_k=3)):
        np.testing.assert_array_equal(a.vokens, b.vokens)


@pytest.mark.parametrize("num_proc", [0, -1, 1.5, True])
def test_a_bad_num_proc_is_refused(vokenizer, num_proc):
    with pytest.raises(ValueError, match="num_proc must be a positive int"):
        vokenizer.vokenize_dataset(datasets.Dataset.from_dict({"text": SENTENCES}), num_proc=num_proc)


def test_align_by_overlap_picks_the_highest_intersection_over_union():
    source = [(0, 0), (0, 3), (3, 5), (6, 9), (10, 12), (0, 0)]
    target = [(0, 0), (0, 5), (6, 7), (7, 12), (13, 14), (0, 0)]
    # (0,5): 3/5 with (0,3), 2/5 with (3,5); (6,7): 1/3 with (6,9); (7,12): 2/6 with (6,9), 2/5 with (10,12).
    assert align_by_overlap(source, target) == [-1, 1, 3, 4, -1, -1]


def test_revokenization_gives_byte_level_bpe_tokens_the_vokens_of_overlapping_bert_tokens(vokenizer):
    target = train_byte_level_bpe(SENTENCES * 3, vocab_size=300, model_max_length=64)
    revokenizer = ReVokenizer(vokenizer, target)
    source, result = vokenizer.vokenize(SENTENCES[0])[0], revokenizer.vokenize(SENTENCES[0])[0]
    assert result.input_ids == target(SENTENCES[0])["input_ids"] and result.tokens[0] == "<s>"
    assert result.vokens[0] == result.vokens[-1] == IGNORE
    by_span = dict(zip(source.offsets[1:-1], source.vokens[1:-1]))
    shared = [(i, span) for i, span in enumerate(result.offsets) if span in by_span]
    assert shared  # words both tokenizers keep whole
    for position, span in shared:
        assert result.vokens[position] == by_span[span]
    # Every token covering text gets a voken; a bare-space piece ("Ġ", an empty span once trimmed) covers none.
    covering = np.array([end > start for start, end in result.offsets])
    assert (result.vokens[covering] != IGNORE).all() and (result.vokens[~covering] == IGNORE).all()
    assert (~covering[1:-1]).any()
    column = revokenizer.vokenize_dataset(datasets.Dataset.from_dict({"text": SENTENCES}))["vokens"]
    assert column[0] == result.vokens.tolist()
    assert revokenizer.fingerprint != vokenizer.fingerprint


# ---- bad inputs ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sentences, match", [
    ("", "empty"), (["a cat", "   "], r"`text`\[1\] is blank"), ([], "empty list"), ([3], "not a string"),
    (None, "pass a string"),
])
def test_empty_blank_and_non_string_sentences_are_refused(vokenizer, sentences, match):
    with pytest.raises(ValueError, match=match):
        vokenizer.vokenize(sentences)


def test_top_k_larger_than_the_image_set_is_refused(vokenizer):
    with pytest.raises(ValueError, match="holds only 10 images"):
        vokenizer.vokenize("a cat", top_k=11)
    with pytest.raises(ValueError, match="positive int"):
        vokenizer.vokenize("a cat", top_k=0)


def test_an_ivf_search_whose_probed_lists_hold_fewer_than_top_k_keys_is_refused(model, processor, vokenizer):
    ivf = Vokenizer(model, processor, vokenizer.keys, index_type="ivf", nlist=2, nprobe=1)
    with pytest.raises(ValueError, match="probed IVF lists held fewer than top_k=10 keys.*raise nprobe"):
        ivf.vokenize(SENTENCES[0], top_k=10)


def test_sharding_across_processes_is_refused_for_a_model_off_the_cpu(model, processor, vokenizer):
    with torch.device("meta"):  # stands for a GPU: any device forked workers cannot use
        elsewhere = VokenizerModel(model.config)
    sharded = Vokenizer(elsewhere, processor, vokenizer.keys)
    with pytest.raises(ValueError, match="num_proc=2 shards the corpus across forked CPU processes, but the matcher is on meta"):
        sharded.vokenize_dataset(datasets.Dataset.from_dict({"text": SENTENCES}), num_proc=2)


def test_a_corpus_refused_at_a_late_row_leaves_no_cache_file(vokenizer, tmp_path):
    datasets.Dataset.from_dict({"text": SENTENCES * 2 + [" "]}).save_to_disk(str(tmp_path / "corpus"))
    corpus = datasets.load_from_disk(str(tmp_path / "corpus"))
    before = sorted(p.name for p in (tmp_path / "corpus").iterdir())
    with pytest.raises(ValueError, match="Row 8 of column 'text'"):
        vokenizer.vokenize_dataset(corpus, batch_size=4)
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == before


def test_a_tokenizer_that_is_not_the_matchers_is_refused(model, vokenizer):
    bigger = train_bert_wordpiece(SENTENCES + ["completely different words here"] * 20, vocab_size=500)
    with pytest.raises(ValueError, match="not the matcher's tokenizer"):
        Vokenizer(model, VokenizerProcessor(VokenizerImageProcessor.for_size(32), bigger), vokenizer.keys)
    with pytest.raises(TypeError, match="fast"):
        ReVokenizer(vokenizer, object())


def test_keys_of_another_width_or_count_are_refused(model, processor, vokenizer):
    with pytest.raises(ValueError, match=r"\(num_images, 8\)"):
        Vokenizer(model, processor, np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match="3 image ids for 10 keys"):
        Vokenizer(model, processor, vokenizer.keys, image_ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        Vokenizer(model, processor, np.full((2, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="max_tokens"):
        Vokenizer(model, processor, vokenizer.keys, max_tokens=65)
    with pytest.raises(ValueError, match="nlist"):
        Vokenizer(model, processor, vokenizer.keys, index_type="ivf", nlist=11)
    with pytest.raises(ValueError, match="index_type"):
        Vokenizer(model, processor, vokenizer.keys, index_type="hnsw")


def test_an_empty_image_set_and_a_missing_column_are_refused(model, processor):
    with pytest.raises(ValueError, match="empty"):
        Vokenizer.build(model, processor, [], show_progress=False)
    with pytest.raises(ValueError, match=r"no column\(s\) \['image'\]"):
        Vokenizer.build(model, processor, datasets.Dataset.from_dict({"img": [1]}), show_progress=False)


def test_a_missing_index_file_is_named(vokenizer, tmp_path):
    vokenizer.save_pretrained(tmp_path)
    (tmp_path / INDEX_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=INDEX_FILE):
        Vokenizer.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="neither a local folder nor a Hub repository"):
        Vokenizer.from_pretrained(tmp_path / "no-such-folder")


def test_thumbnails_are_kept_saved_and_reloaded_and_a_stale_file_is_removed(model, processor, images, vokenizer,
                                                                           tmp_path):
    with_thumbnails = Vokenizer.build(model, processor, images, show_progress=False, thumbnail_size=12, batch_size=4)
    assert with_thumbnails.thumbnails.shape == (10, 12, 12, 3) and with_thumbnails.thumbnails.dtype == np.uint8
    # A centre crop of the image, shrunk: its mean colour is the image's centre's.
    expected = np.asarray(images[4])[:, 2:38].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(with_thumbnails.thumbnails[4].reshape(-1, 3).mean(0), expected, atol=6)
    assert with_thumbnails.thumbnail(4).size == (12, 12) and vokenizer.thumbnail(4) is None
    with_thumbnails.save_pretrained(tmp_path)
    np.testing.assert_array_equal(Vokenizer.from_pretrained(tmp_path).thumbnails, with_thumbnails.thumbnails)
    vokenizer.save_pretrained(tmp_path)  # another key store saved over it: its thumbnails would show wrong images
    assert not (tmp_path / THUMBNAILS_FILE).exists() and Vokenizer.from_pretrained(tmp_path).thumbnails is None
    with pytest.raises(ValueError, match="thumbnail_size must be a positive int"):
        Vokenizer.build(model, processor, images, show_progress=False, thumbnail_size=0)
    with pytest.raises(ValueError, match=r"thumbnails must be a uint8 \(num_images=10"):
        Vokenizer(model, processor, vokenizer.keys, thumbnails=with_thumbnails.thumbnails[:3])
    with pytest.raises(ValueError, match="outside \\[0, 10\\)"):
        with_thumbnails.thumbnail(10)


@pytest.mark.parametrize("name, damage", [
    (KEYS_FILE, "truncate"), (INDEX_FILE, "truncate"), (INDEX_CONFIG_FILE, "truncate"), (KEYS_FILE, "garbage"),
    (INDEX_FILE, "garbage"), (THUMBNAILS_FILE, "truncate"),
])
def test_a_damaged_key_store_file_is_named(model, processor, images, tmp_path, name, damage):
    Vokenizer.build(model, processor, images, show_progress=False, thumbnail_size=8).save_pretrained(tmp_path)
    path = tmp_path / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00not a key store file" * 8)
    with pytest.raises(ValueError, match=f"{name} cannot be read .* damaged or truncated"):
        Vokenizer.from_pretrained(tmp_path)


def test_key_store_files_of_different_saves_are_refused(model, processor, vokenizer, tmp_path):
    vokenizer.save_pretrained(tmp_path / "flat")
    Vokenizer(model, processor, vokenizer.keys[:8], index_type="ivf", nlist=2, nprobe=1).save_pretrained(tmp_path / "ivf")
    (tmp_path / "flat" / INDEX_FILE).write_bytes((tmp_path / "ivf" / INDEX_FILE).read_bytes())
    with pytest.raises(ValueError, match="different saves"):
        Vokenizer.from_pretrained(tmp_path / "flat")
    for name in (KEYS_FILE, "voken_image_ids.txt"):  # 10 keys and ids beside an index of 8
        (tmp_path / "ivf" / name).write_bytes((tmp_path / "flat" / name).read_bytes())
    with pytest.raises(ValueError, match="not built together"):
        Vokenizer.from_pretrained(tmp_path / "ivf")


def test_a_key_store_of_other_image_weights_is_refused(vokenizer, tmp_path):
    vokenizer.save_pretrained(tmp_path)
    retrained = VokenizerModel.from_pretrained(tmp_path)
    with torch.no_grad():
        retrained.visn_model.mlp[3].bias.add_(0.1)
    retrained.save_pretrained(tmp_path)  # the model saved again after more training: the keys are stale
    with pytest.raises(ValueError, match="other image-side weights"):
        Vokenizer.from_pretrained(tmp_path)


def test_a_corpus_with_an_empty_row_or_without_the_column_is_refused(vokenizer):
    corpus = datasets.Dataset.from_dict({"text": ["a cat", "a dog", ""]})
    with pytest.raises(ValueError, match="Row 2 of column 'text'"):
        vokenizer.vokenize_dataset(corpus, batch_size=2)
    with pytest.raises(ValueError, match="no column 'sentence'.*text_column"):
        vokenizer.vokenize_dataset(corpus, text_column="sentence")
    with pytest.raises(ValueError, match="already has the column"):
        vokenizer.vokenize_dataset(datasets.Dataset.from_dict({"text": ["a"], "vokens": [[1]]}))


def test_saving_onto_a_file_writes_nothing(vokenizer, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("a user's file")
    with pytest.raises(FileExistsError):
        vokenizer.save_pretrained(target)
    assert target.read_text() == "a user's file"
