"""Parity with the original code (airsplay/vokenization `vlm/model.py`, `CoLwithBert`), run where a checkout of it is
given: `VOKENIZATION_REPO=/path/to/vokenization pytest tests/test_voken_lm_parity.py`. The original is built on this
transformers' BERT (its 3.3 module path aliased), given random weights, saved as its state dict, converted, and both
models score the same masked batch: MLM logits, voken logits and both losses."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from hf_mmdl.convert.voken_lm import convert_voken_lm_checkpoint
from hf_mmdl.modeling import VokenBertForPreTraining

from voken_lm_helpers import tiny_inputs

REPO = os.environ.get("VOKENIZATION_REPO")
pytestmark = pytest.mark.skipif(not REPO or not (Path(REPO) / "vlm" / "model.py").is_file(),
                                reason="set VOKENIZATION_REPO to a checkout of airsplay/vokenization")


def original_module():
    import transformers.models.bert.modeling_bert as modeling_bert

    sys.modules.setdefault("transformers.modeling_bert", modeling_bert)  # its transformers 3.3 import path
    spec = importlib.util.spec_from_file_location("original_vlm_model", Path(REPO) / "vlm" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converted_original_colwithbert_gives_the_same_logits_and_losses(tmp_path):
    original = original_module()
    config = original.CoLBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=37, max_position_embeddings=64)
    config.voken_size, config.do_voken_cls = 10, True  # what run_vlm_distributed.py sets after construction
    torch.manual_seed(0)
    model = original.CoLwithBert(config).eval()
    with torch.no_grad():  # random, not the init's zero biases and unit LayerNorms
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    folder = tmp_path / "original"
    folder.mkdir()
    torch.save(dict(model.state_dict()), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(config.to_json_string())
    ours = VokenBertForPreTraining.from_pretrained(convert_voken_lm_checkpoint(folder, tmp_path / "converted")).eval()

    inputs = tiny_inputs()
    with torch.no_grad():
        hidden = model.bert(inputs["input_ids"], attention_mask=inputs["attention_mask"])[0]
        logits, voken_logits = model.cls(hidden), model.visual_cls_head(hidden)
        voken_loss, mlm_loss = model(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     masked_lm_labels=inputs["labels"], voken_labels=inputs["voken_labels"])
        out = ours(**inputs)
    differences = {name: (a - b).abs().max().item() for name, a, b in [
        ("logits", out.logits, logits), ("voken_logits", out.voken_logits, voken_logits),
        ("mlm_loss", out.mlm_loss, mlm_loss), ("voken_loss", out.voken_loss, voken_loss)]}
    print("max abs differences:", differences)
    assert all(d == 0 for d in differences.values()), differences
