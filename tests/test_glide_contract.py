"""The shared model contract (tests/model_contract.py) for GLIDE's text-conditional diffusion model."""

import torch
from transformers import AutoModel

from hf_mmdl import GlideModel
from hf_mmdl.architectures import architecture_of

from bad_inputs import BadInputs
from model_contract import ModelContract
from test_glide_modeling import PAD, tiny_config


class TestGlideContract(ModelContract, BadInputs):
    model_class = GlideModel
    auto_class = AutoModel
    lora_target_modules = architecture_of("glide").entry("glide").lora_target_modules
    # Every attention layer of the UNet: the image tokens' queries, keys, values and output, and the caption's keys
    # and values; nothing in the caption transformer.
    lora_promised_modules = tuple(
        rf"^unet\..*attentions\.\d+\.{name}$" for name in ("to_q", "to_k", "to_v", r"to_out\.0", "add_k_proj", "add_v_proj")
    )
    # Measured: 0.19 of the first loss after 5 steps.
    learning_rate, learning_steps, learning_ratio = 1e-3, 5, 0.4
    # bf16 moved the loss by 0.1-1.2e-3 (relative, 10 seeds). The loss of a barely trained model is mostly E[ε²], so
    # casts inside the UNet show in the output check instead (timesteps rounded to bf16: 4.9e-2 against 1.8e-2).
    bf16_loss_rtol = 3e-3
    text_key = "input_ids"

    def config(self):
        return tiny_config()

    def prepare(self, model):
        # ADM zero-initialises the output convolution, so a fresh model predicts 0 whatever its other weights are and
        # only that convolution gets gradients: give it a trained one's scale.
        torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)

    def inputs(self, batch_size=2):
        generator = torch.Generator().manual_seed(0)
        input_ids = torch.randint(1, 50, (batch_size, 8), generator=generator)
        attention_mask = torch.ones(batch_size, 8, dtype=torch.long)
        input_ids[-1, 3:], attention_mask[-1, 3:] = PAD, 0  # a short caption, padded
        return {
            "pixel_values": torch.rand(batch_size, 3, 16, 16, generator=generator) * 2 - 1,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            # The hybrid loss at fixed timesteps and noise, so the same batch always gives the same loss.
            "timesteps": torch.randint(0, 1000, (batch_size,), generator=generator),
            "noise": torch.randn(batch_size, 3, 16, 16, generator=generator),
        }
