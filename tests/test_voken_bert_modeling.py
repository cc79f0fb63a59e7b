"""The voken-classification LM (VokenBertForPreTraining): losses against hand computation, the original's names and
sizes, fill-mask through the Auto classes, fine-tuning as a plain BERT, and the data collator."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, BertForSequenceClassification, pipeline

from hf_mmdl.modeling import VokenBertConfig, VokenBertForPreTraining
from hf_mmdl.modeling.configuration_voken_bert import VOKEN_BERT_SIZES
from hf_mmdl.processing import DataCollatorForVokenLanguageModeling

from voken_lm_helpers import SENTENCES, tiny_config, tiny_inputs, tiny_tokenizer


def make_model(**overrides):
    torch.manual_seed(0)
    return VokenBertForPreTraining(tiny_config(**overrides)).eval()


def test_loss_is_voken_cross_entropy_plus_lambda_times_mlm_cross_entropy():
    model = make_model(mlm_ratio=0.5)
    inputs = tiny_inputs()
    with torch.no_grad():
        out = model(**inputs)
    # By hand: the head is dense → exact GELU → LayerNorm → decoder on the last hidden state.
    with torch.no_grad():
        hidden = model.bert(inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        head = model.visual_cls_head
        voken_logits = head.decoder(F.layer_norm(F.gelu(head.dense(hidden)), (32,), head.layer_norm.weight,
                                                 head.layer_norm.bias, eps=model.config.layer_norm_eps))
    torch.testing.assert_close(out.voken_logits, voken_logits)
    kept = inputs["voken_labels"] != -100
    voken_loss = F.cross_entropy(voken_logits[kept], inputs["voken_labels"][kept])
    masked = inputs["labels"] != -100
    mlm_loss = F.cross_entropy(out.logits[masked], inputs["labels"][masked])
    torch.testing.assert_close(out.voken_loss, voken_loss)
    torch.testing.assert_close(out.mlm_loss, mlm_loss)
    torch.testing.assert_close(out.loss, voken_loss + 0.5 * mlm_loss)


def test_mlm_only_and_voken_only_batches_give_their_own_term():
    model = make_model(mlm_ratio=0.5)
    inputs = tiny_inputs()
    with torch.no_grad():
        both = model(**inputs)
        mlm_only = model(**(inputs | {"voken_labels": None}))
        voken_only = model(**(inputs | {"labels": None}))
        neither = model(inputs["input_ids"])
    # The MLM-only baseline trains on the plain (unweighted) MLM loss, as BertForMaskedLM would.
    torch.testing.assert_close(mlm_only.loss, both.mlm_loss)
    assert mlm_only.voken_loss is None
    torch.testing.assert_close(voken_only.loss, both.voken_loss)
    assert neither.loss is None and neither.logits.shape == (2, 16, 99)


def test_a_batch_without_any_target_gives_a_zero_loss_not_nan():
    # A short batch can hold no masked token ("mask" voken labels then hold none either): F.cross_entropy's mean
    # over no positions is NaN, which would poison the weights.
    model = make_model().train()
    inputs = tiny_inputs()
    inputs["labels"][:] = -100
    inputs["voken_labels"][:] = -100
    out = model(**inputs)
    assert out.loss.item() == 0.0
    out.loss.backward()  # still attached to the graph


def test_the_mlm_decoder_is_tied_to_the_word_embeddings_also_after_reload(tmp_path):
    model = make_model()
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    reloaded = VokenBertForPreTraining.from_pretrained(tmp_path)
    assert reloaded.cls.predictions.decoder.weight is reloaded.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(reloaded.cls.predictions.decoder.weight, model.bert.embeddings.word_embeddings.weight)


def test_state_dict_names_and_shapes_are_the_original_colwithbert_ones():
    model = make_model()
    names = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert names["visual_cls_head.dense.weight"] == (32, 32)
    assert names["visual_cls_head.layer_norm.weight"] == (32,)
    assert names["visual_cls_head.decoder.weight"] == (10, 32)
    assert names["visual_cls_head.decoder.bias"] == (10,)
    assert names["cls.predictions.transform.dense.weight"] == (32, 32)
    assert names["cls.predictions.bias"] == (99,)
    assert "bert.encoder.layer.1.attention.self.query.weight" in names
    assert not any(name.startswith("bert.pooler") for name in names)
    assert {name.split(".")[0] for name in names} == {"bert", "cls", "visual_cls_head"}


@pytest.mark.parametrize("size, millions", [("6L_512H", 61.0), ("12L_768H", 148.6)])
def test_the_paper_sizes_have_the_released_parameter_counts(size, millions):
    with torch.device("meta"):
        model = VokenBertForPreTraining(VokenBertConfig(**VOKEN_BERT_SIZES[size]))
    assert round(model.num_parameters() / 1e6, 1) == millions


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="voken_size"):
        VokenBertConfig(voken_size=0)
    with pytest.raises(ValueError, match="mlm_ratio"):
        VokenBertConfig(mlm_ratio=-1.0)
    with pytest.raises(ValueError, match="voken_labels"):
        VokenBertConfig(voken_labels="masked")


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    """A tiny model with a WordPiece tokenizer, saved as a pre-training run saves it."""
    tokenizer = tiny_tokenizer(model_max_length=32)
    torch.manual_seed(0)
    model = VokenBertForPreTraining(tiny_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    folder = tmp_path_factory.mktemp("voken_lm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def test_fill_mask_pipeline_loads_the_folder_and_ranks_by_the_mlm_logits(saved_folder):
    folder, model, tokenizer = saved_folder
    assert type(AutoModelForMaskedLM.from_pretrained(folder)) is VokenBertForPreTraining
    fill = pipeline("fill-mask", model=str(folder), top_k=3)
    predictions = fill("a red [MASK] lies on the table")
    assert len(predictions) == 3
    inputs = tokenizer("a red [MASK] lies on the table", return_tensors="pt")
    with torch.no_grad():
        logits = model.eval()(**inputs).logits[0, inputs["input_ids"][0].tolist().index(tokenizer.mask_token_id)]
    assert [p["token"] for p in predictions] == logits.topk(3).indices.tolist()


def test_a_saved_folder_fine_tunes_as_transformers_bert_for_sequence_classification(saved_folder, tmp_path):
    folder, model, tokenizer = saved_folder
    classifier = BertForSequenceClassification.from_pretrained(folder, num_labels=3)
    encoder, original = classifier.bert.state_dict(), model.bert.state_dict()
    assert set(original) < set(encoder) and {k for k in encoder if k not in original} == {
        "pooler.dense.weight", "pooler.dense.bias"}
    for name, tensor in original.items():
        torch.testing.assert_close(encoder[name], tensor, rtol=0, atol=0)
    # The pooler and classifier are fresh (initialised, not zeros or garbage), and the whole model trains.
    assert classifier.classifier.weight.std() > 0 and classifier.bert.pooler.dense.weight.std() > 0
    inputs = tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")
    out = classifier(**inputs, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)
    out.loss.backward()
    # Saved again it is a plain BERT folder: transformers alone reads it.
    classifier.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "bert"
    assert json.loads((saved_folder[0] / "config.json").read_text())["model_type"] == "voken_bert"


# ---- the data collator -------------------------------------------------------------------------------------------
def tokenized_rows(tokenizer, sentences=SENTENCES, voken_size=10):
    rows = []
    for i, sentence in enumerate(sentences):
        ids = tokenizer(sentence)["input_ids"]
        vokens = [-100] + [(i + j) % voken_size for j in range(len(ids) - 2)] + [-100]
        rows.append({"input_ids": ids, "vokens": vokens})
    return rows


@pytest.mark.parametrize("mode", ["all", "mask", "nonmask"])
def test_collator_pads_vokens_with_minus_100_and_applies_voken_labels(mode):
    tokenizer = tiny_tokenizer()
    rows = tokenized_rows(tokenizer)
    collator = DataCollatorForVokenLanguageModeling(tokenizer, voken_labels=mode, voken_size=10, seed=0,
                                                    mlm_probability=0.5)
    batch = collator(rows)
    assert batch["voken_labels"].shape == batch["input_ids"].shape
    masked = batch["labels"] != -100
    assert masked.any() and (~masked & (batch["attention_mask"] == 1)).any()
    for i, row in enumerate(rows):
        n = len(row["vokens"])
        expected = torch.tensor(row["vokens"])
        if mode == "mask":
            expected[~masked[i, :n]] = -100
        elif mode == "nonmask":
            expected[masked[i, :n]] = -100
        assert batch["voken_labels"][i, :n].tolist() == expected.tolist()
        assert (batch["voken_labels"][i, n:] == -100).all()  # padding carries no voken
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()


def test_collator_masks_15_percent_of_real_tokens_80_10_10_and_never_special_ones():
    tokenizer = tiny_tokenizer(model_max_length=64)
    rows = tokenized_rows(tokenizer, SENTENCES * 200)
    collator = DataCollatorForVokenLanguageModeling(tokenizer, seed=0)
    original = collator.tokenizer.pad({"input_ids": [r["input_ids"] for r in rows]}, return_tensors="pt")["input_ids"]
    batch = collator(rows)
    masked = batch["labels"] != -100
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    assert not (masked & special).any()
    assert abs(masked.sum().item() / (~special).sum().item() - 0.15) < 0.01
    ids = batch["input_ids"][masked]
    as_mask = (ids == tokenizer.mask_token_id).float().mean().item()
    unchanged = (ids == original[masked]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.03 and abs(unchanged - 0.1) < 0.03  # the other ~10 %: random tokens
    assert (batch["labels"][masked] == original[masked]).all()


def test_collator_without_vokens_gives_plain_mlm_batches():
    tokenizer = tiny_tokenizer()
    rows = [{"input_ids": row["input_ids"]} for row in tokenized_rows(tokenizer)]
    batch = DataCollatorForVokenLanguageModeling(tokenizer, seed=0)(rows)
    assert "voken_labels" not in batch and "labels" in batch


def test_collator_left_padding_pads_vokens_on_the_left():
    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "left"
    rows = tokenized_rows(tokenizer)
    batch = DataCollatorForVokenLanguageModeling(tokenizer, seed=0, mlm_probability=0.0)(rows)
    for i, row in enumerate(rows):
        n = len(row["vokens"])
        assert batch["voken_labels"][i, -n:].tolist() == row["vokens"]
        assert (batch["voken_labels"][i, :-n] == -100).all()


@pytest.mark.parametrize("change, match", [
    ("one voken short", "aligned"),
    ("a voken at [CLS]", "special token"),
    ("a voken >= voken_size", r"outside \[0, 10\)"),
    ("a negative voken", r"outside \[0, 10\)"),
    ("one row without vokens", "no vokens"),
])
def test_collator_refuses_misaligned_or_out_of_range_vokens_naming_the_row(change, match):
    tokenizer = tiny_tokenizer()
    rows = tokenized_rows(tokenizer)
    row = rows[1]
    if change == "one voken short":
        row["vokens"] = row["vokens"][:-1]
    elif change == "a voken at [CLS]":
        row["vokens"][0] = 3
    elif change == "a voken >= voken_size":
        row["vokens"][2] = 10
    elif change == "a negative voken":
        row["vokens"][2] = -5
    else:
        del row["vokens"]
    with pytest.raises(ValueError, match=match) as error:
        DataCollatorForVokenLanguageModeling(tokenizer, voken_size=10, seed=0)(rows)
    assert "1" in str(error.value)


def test_collator_refuses_bad_settings():
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match="voken_labels"):
        DataCollatorForVokenLanguageModeling(tokenizer, voken_labels="masked")
    with pytest.raises(ValueError, match="mlm"):
        DataCollatorForVokenLanguageModeling(tokenizer, mlm=False)
    with pytest.raises(ValueError, match="voken_size"):
        DataCollatorForVokenLanguageModeling(tokenizer, voken_size=0)


# ---- bad inputs of the model beyond the shared battery ------------------------------------------------------------
@pytest.mark.parametrize("change, match", [
    ("voken id >= voken_size", r"voken_labels hold 10, outside \[0, 10\)"),
    ("vokens not aligned with the tokens", r"voken_labels have shape \(2, 15\)"),
    ("token id >= vocab_size", r"input_ids must lie in \[0, 99\)"),
    ("label id >= vocab_size", r"labels hold 99"),
    ("float input_ids", "integer tensor"),
    ("attention mask of another shape", "attention_mask has shape"),
])
def test_model_refuses_bad_inputs_naming_them(change, match):
    model = make_model()
    inputs = tiny_inputs()
    if change == "voken id >= voken_size":
        inputs["voken_labels"][0, 3] = 10
    elif change == "vokens not aligned with the tokens":
        inputs["voken_labels"] = inputs["voken_labels"][:, 1:]
    elif change == "token id >= vocab_size":
        inputs["input_ids"][1, 2] = 99
    elif change == "label id >= vocab_size":
        inputs["labels"][0, 1] = 99
    elif change == "float input_ids":
        inputs["input_ids"] = inputs["input_ids"].float()
    else:
        inputs["attention_mask"] = inputs["attention_mask"][:, :-1]
    with torch.no_grad(), pytest.raises(ValueError, match=match):
        model(**inputs)


def test_auto_model_loads_the_encoder_with_every_weight_of_the_folder(saved_folder):
    from transformers import AutoModel

    folder, model, _ = saved_folder
    encoder = AutoModel.from_pretrained(folder)
    assert encoder.pooler is None
    original = model.bert.state_dict()
    assert encoder.state_dict().keys() == original.keys()
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(tensor, original[name], rtol=0, atol=0)
