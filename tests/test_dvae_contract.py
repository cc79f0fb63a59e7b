"""The shared model contract (tests/model_contract.py) for the DALL-E discrete VAE."""

import torch
from transformers import AutoModelForImageToImage

from hf_mmdl import DiscreteVAEConfig, DiscreteVAEModel
from hf_mmdl.modeling import map_pixels
from hf_mmdl.architectures import architecture_of

from bad_inputs import BadInputs
from model_contract import ModelContract
from test_autoencoder_modeling import TINY_DVAE


class TestDiscreteVAEContract(ModelContract, BadInputs):
    model_class = DiscreteVAEModel
    auto_class = AutoModelForImageToImage
    lora_target_modules = architecture_of("dvae").entry("dvae").lora_target_modules
    # Every convolution of every residual path; the codebook (decoder input) and the logit convolution stay frozen.
    lora_promised_modules = (r"coder\.blocks\.group_\d+\.block_\d+\.res_path\.conv_[1-4]$",)
    # The loss is a negative log-density per value (−0.026 at init), so it has no floor at 0 to halve towards.
    # Measured: 0.16 nats per value lower after 20 steps.
    learning_rate, learning_steps, learning_drop = 1e-2, 20, 0.1
    # bf16 moved the relaxed loss by 0.2-0.9e-3 (relative, 10 seeds); the logit-Laplace NLL in bf16 moves it by 7e-2.
    bf16_loss_rtol = 3e-3
    # ±inf already fail the dVAE's mapped-pixel range check; NaN passes every comparison.

    def config(self):
        return DiscreteVAEConfig(**TINY_DVAE)

    def inputs(self, batch_size=2):
        images = torch.rand(batch_size, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        # The relaxed objective (what training optimises) in eval mode too, with its gumbel noise drawn from
        # `generator`: through argmax codes the loss jumps wherever bf16 flips a near-tie (2.8e-2 measured).
        return {"pixel_values": map_pixels(images), "relaxed": True, "generator": torch.Generator().manual_seed(1)}

    def output(self, outputs):
        # The logit-Laplace parameters: in eval mode `reconstruction` passes through the argmax tokens, which a small
        # change of the encoder may leave as they are.
        return outputs.decoder_output
