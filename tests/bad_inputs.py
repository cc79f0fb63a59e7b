"""The bad-input battery every architecture runs, written once beside the model contract (tests/model_contract.py).

An architecture's contract tester mixes `BadInputs` in and names its inputs: which keyword holds the visual tensor
(`visual_key`, None for text-only models) and which the token ids (`text_key`, None for image-only models). Each test
then feeds the model what users really pass by mistake and asks for a clear `ValueError`/`TypeError` that names the
input (never a NaN result, a shape error from deep inside a layer, or random weights), and for nothing half-written.
"""

import pytest
import torch
from transformers import BertConfig, BertModel

# Words that an error about an input must contain, at least one of them, besides the input's name.
NON_FINITE = r"(?i)(nan|inf|finite)"



class BadInputs:
    visual_key: str | None = "pixel_values"
    text_key: str | None = None

    def visual_input(self) -> torch.Tensor:
        if self.visual_key is None:
            pytest.skip("no visual input")
        return self.inputs()[self.visual_key]

    def refuses(self, model, error=(ValueError, TypeError), match=None, **overrides):
        """`model(**(inputs | overrides))` raises `error` whose message names what was wrong."""
        with torch.no_grad(), pytest.raises(error, match=match):
            self.forward(model, **overrides)

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
    def test_non_finite_visual_inputs_are_refused(self, value):
        visual = self.visual_input().clone()
        visual.view(-1)[3] = value
        self.refuses(self.make_model(), ValueError, NON_FINITE, **{self.visual_key: visual})

    def test_integer_visual_tensors_are_refused(self):
        # A uint8/int tensor of pixels (0-255) or features is never silently cast: it would mean other values.
        visual = self.visual_input()
        self.refuses(self.make_model(), (TypeError, ValueError), "(?i)(dtype|float|integer)",
                     **{self.visual_key: (visual.abs() * 100).to(torch.int64)})

    @pytest.mark.parametrize("change", ["no batch dimension", "an extra dimension"])
    def test_visual_tensors_of_the_wrong_rank_are_refused(self, change):
        visual = self.visual_input()
        visual = visual[0] if change == "no batch dimension" else visual[:, None]
        self.refuses(self.make_model(), ValueError, self.visual_key, **{self.visual_key: visual})

    def test_mismatched_batch_sizes_are_refused(self):
        if self.text_key is None or self.visual_key is None:
            pytest.skip("one batched input only")
        self.refuses(self.make_model(), ValueError, "(?i)batch", **{self.visual_key: self.inputs(batch_size=1)[self.visual_key]})

    def test_empty_text_is_refused(self):
        if self.text_key is None:
            pytest.skip("no text input")
        ids = self.inputs()[self.text_key]
        self.refuses(self.make_model(), ValueError, self.text_key, **{self.text_key: ids[:, :0]})

    def test_text_longer_than_the_position_table_is_refused(self):
        if self.text_key is None:
            pytest.skip("no text input")
        ids = self.inputs()[self.text_key]
        too_long = ids[:, :1].repeat(1, 4096)
        overrides = {self.text_key: too_long}
        if "attention_mask" in self.inputs():
            overrides["attention_mask"] = torch.ones_like(too_long)
        self.refuses(self.make_model(), ValueError, "(?i)(long|position|length)", **overrides)

    def test_a_truncated_safetensors_file_is_refused_naming_the_file(self, tmp_path):
        self.make_model().save_pretrained(tmp_path)
        weights = tmp_path / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        with pytest.raises(Exception, match="model.safetensors"):
            self.model_class.from_pretrained(tmp_path)

    def test_a_folder_of_another_architecture_is_refused(self, tmp_path):
        # A BERT folder (what a mistyped Hub id most often gives) must not load as random weights with a warning.
        BertModel(BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                             intermediate_size=8)).save_pretrained(tmp_path)
        with pytest.raises(ValueError, match="(?i)(model_type|bert)"):
            self.model_class.from_pretrained(tmp_path)

    def test_saving_onto_a_file_raises_and_leaves_it_untouched(self, tmp_path):
        target = tmp_path / "notes.txt"
        target.write_text("a user's file")
        with pytest.raises((ValueError, OSError, FileExistsError, NotADirectoryError)):
            self.make_model().save_pretrained(target)
        assert target.read_text() == "a user's file"
