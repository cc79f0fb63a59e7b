"""The shared model contract (tests/model_contract.py) and bad-input battery for the Vokenizer matcher."""

from transformers import AutoModel

from hf_mmdl import VokenizerModel
from hf_mmdl.architectures import architecture_of

from bad_inputs import BadInputs
from model_contract import ModelContract
from test_vokenizer_modeling import paired_inputs, tiny_config


class TestVokenizerContract(ModelContract, BadInputs):
    model_class = VokenizerModel
    auto_class = AutoModel
    lora_target_modules = architecture_of("vokenizer").entry("vokenizer").lora_target_modules
    # The BERT's attention queries and values and the four linear layers of the two MLP heads.
    lora_promised_modules = (r"^lang_model\.backbone\.encoder\.layer\.\d+\.attention\.self\.(query|value)$",
                             r"^(lang|visn)_model\.mlp\.(0|3)$")
    # Measured: 10 AdamW steps at 1e-3 bring the hinge loss from 0.50 to 0 (every token past the margin).
    learning_rate, learning_steps, learning_ratio = 1e-3, 10, 0.5
    # bf16 moved the loss by 8.3e-4 (relative) on this batch.
    bf16_loss_rtol = 5e-3
    text_key = "input_ids"

    def config(self):
        # Both encoders trained (the small recipe's setting): frozen ones would leave checkpointing nothing to do.
        return tiny_config(freeze_text_backbone=False, freeze_vision_backbone=False)

    def inputs(self, batch_size=2):
        return paired_inputs(batch_size)
