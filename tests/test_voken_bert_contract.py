"""The shared model contract (tests/model_contract.py) and bad-input battery for the voken-classification LM."""

import torch
from transformers import AutoModelForPreTraining

from hf_mmdl.modeling import VokenBertForPreTraining, VokenBertModel

from bad_inputs import BadInputs
from model_contract import ModelContract
from voken_lm_helpers import VOKEN_BERT_AUTO_ENTRY, tiny_config, tiny_inputs


class TestVokenBertContract(ModelContract, BadInputs):
    model_class = VokenBertForPreTraining
    auto_class = AutoModelForPreTraining
    bare_model_class = VokenBertModel
    lora_target_modules = VOKEN_BERT_AUTO_ENTRY.lora_target_modules
    # Every encoder self-attention's query and value projection; not the heads, keys, FFNs or embeddings.
    lora_promised_modules = (r"^bert\.encoder\.layer\.\d+\.attention\.self\.query$",
                             r"^bert\.encoder\.layer\.\d+\.attention\.self\.value$")
    # Measured: 0.67 of the first loss after 10 steps.
    learning_rate, learning_steps, learning_ratio = 3e-3, 10, 0.8
    # bf16 moved the loss by 1.0e-5 to 3.8e-5 (relative, 5 seeds): both losses are computed in float32.
    bf16_loss_rtol = 5e-4
    visual_key = None
    text_key = "input_ids"

    def config(self):
        return tiny_config()

    def inputs(self, batch_size=2):
        return tiny_inputs(batch_size)

    def output(self, outputs):
        # Both heads' scores, so that a change to either shows.
        return torch.cat([outputs.logits.flatten(), outputs.voken_logits.flatten()])
