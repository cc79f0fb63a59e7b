"""Model configurations and PyTorch models, one configuration and one modeling file per architecture."""

from .configuration_data2vec_multimodal import Data2VecMultimodalConfig
from .configuration_dvae import DiscreteVAEConfig
from .configuration_glide import GlideConfig, GlideTextConfig
from .configuration_m2 import M2Config
from .configuration_resnext import ResNeXtConfig
from .configuration_multimodal_vae import MultimodalVAEConfig
from .configuration_vae import ImageVAEConfig
from .configuration_voken_bert import VokenBertConfig
from .configuration_vokenizer import VokenizerConfig
from .inputs import map_pixels, unmap_pixels
from .modeling_data2vec_multimodal import (
    Data2VecMultimodalForAudioClassification, Data2VecMultimodalForImageClassification, Data2VecMultimodalForPreTraining,
    Data2VecMultimodalForPreTrainingOutput, Data2VecMultimodalForSequenceClassification,
    Data2VecMultimodalForZeroShotClassification, Data2VecMultimodalModel, Data2VecMultimodalModelOutput,
    Data2VecMultimodalPreTrainedModel, Data2VecMultimodalZeroShotOutput,
)
from .modeling_dvae import DiscreteVAEModel, DiscreteVAEOutput, DiscreteVAEPreTrainedModel
from .modeling_glide import GlideModel, GlideOutput, GlideTextModel, inpainting_model_from, random_erase_masks
from .modeling_m2 import M2EncoderOutput, M2ForConditionalGeneration, M2Model, M2PreTrainedModel
from .modeling_resnext import FrozenBatchNorm2d, ResNeXtBackbone, ResNeXtPreTrainedModel
from .modeling_multimodal_vae import (
    MultimodalVAEEncoderOutput, MultimodalVAEModel, MultimodalVAEOutput, MultimodalVAEPreTrainedModel,
)
from .modeling_vae import ImageVAEModel, ImageVAEOutput, ImageVAEPreTrainedModel, convert_autoencoder_kl
from .modeling_voken_bert import (
    VokenBertForPreTraining, VokenBertForPreTrainingOutput, VokenBertModel, VokenBertPreTrainedModel,
)
from .modeling_vokenizer import VokenizerModel, VokenizerModelOutput, VokenizerPreTrainedModel

__all__ = [
    "Data2VecMultimodalConfig",
    "Data2VecMultimodalForAudioClassification",
    "Data2VecMultimodalForImageClassification",
    "Data2VecMultimodalForPreTraining",
    "Data2VecMultimodalForPreTrainingOutput",
    "Data2VecMultimodalForSequenceClassification",
    "Data2VecMultimodalForZeroShotClassification",
    "Data2VecMultimodalModel",
    "Data2VecMultimodalModelOutput",
    "Data2VecMultimodalPreTrainedModel",
    "Data2VecMultimodalZeroShotOutput",
    "DiscreteVAEConfig",
    "DiscreteVAEModel",
    "DiscreteVAEOutput",
    "DiscreteVAEPreTrainedModel",
    "GlideConfig",
    "GlideModel",
    "GlideOutput",
    "GlideTextConfig",
    "GlideTextModel",
    "ImageVAEConfig",
    "ImageVAEModel",
    "ImageVAEOutput",
    "ImageVAEPreTrainedModel",
    "M2Config",
    "M2EncoderOutput",
    "M2ForConditionalGeneration",
    "M2Model",
    "M2PreTrainedModel",
    "VokenBertConfig",
    "VokenBertForPreTraining",
    "VokenBertForPreTrainingOutput",
    "VokenBertModel",
    "VokenBertPreTrainedModel",
    "FrozenBatchNorm2d",
    "ResNeXtBackbone",
    "ResNeXtConfig",
    "ResNeXtPreTrainedModel",
    "VokenizerConfig",
    "VokenizerModel",
    "VokenizerModelOutput",
    "VokenizerPreTrainedModel",
    "MultimodalVAEConfig",
    "MultimodalVAEEncoderOutput",
    "MultimodalVAEModel",
    "MultimodalVAEOutput",
    "MultimodalVAEPreTrainedModel",
    "convert_autoencoder_kl",
    "inpainting_model_from",
    "map_pixels",
    "random_erase_masks",
    "unmap_pixels",
]
