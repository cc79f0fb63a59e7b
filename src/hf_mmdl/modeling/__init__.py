"""Model configurations and PyTorch models, one configuration and one modeling file per architecture."""

from .configuration_m2 import M2Config
from .modeling_m2 import M2EncoderOutput, M2ForConditionalGeneration, M2Model, M2PreTrainedModel

__all__ = ["M2Config", "M2EncoderOutput", "M2ForConditionalGeneration", "M2Model", "M2PreTrainedModel"]
