"""Configuration of data2vec-multimodal: one data2vec student/teacher Transformer (Baevski et al., "data2vec: A General
Framework for Self-supervised Learning in Speech, Vision and Language", ICML 2022) over text, images and audio, with the
modality-expert blocks of VLMo (Bao et al., NeurIPS 2022) and BEiT-3 (Wang et al., CVPR 2023).

The three input encoders are transformers' own Data2Vec input stages, configured by transformers' own
`Data2VecTextConfig`, `Data2VecVisionConfig` and `Data2VecAudioConfig` (only their input-side fields are read: the
shared blocks are configured here), so released unimodal checkpoints convert without renaming their settings.
"""

from transformers import Data2VecAudioConfig, Data2VecTextConfig, Data2VecVisionConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .loading import ModelTypeCheckedConfig

MODALITIES = ("text", "image", "audio")
BLOCK_SHARING = ("experts", "shared", "separate")
CROSS_MODAL_LOSSES = ("regression", "contrastive", "both", "none")
TARGET_NORMS = ("layer", "instance")


class Data2VecMultimodalConfig(ModelTypeCheckedConfig, PretrainedConfig):
    r"""
    Configuration of [`Data2VecMultimodalModel`] and its heads. Defaults are data2vec's Base (L = 12, H = 768, FFN
    3072, 12 heads) with the paper's per-modality objective settings (data2vec Table/§4: top-K blocks averaged as
    targets, smooth-L1 β, masking).

    Args:
        text_config (`Data2VecTextConfig` or `dict`): token + learned position embeddings + LayerNorm (RoBERTa);
            `vocab_size`, `max_position_embeddings`, `pad_token_id`, `bos_token_id`, `eos_token_id`,
            `type_vocab_size`, `layer_norm_eps` are read.
        vision_config (`Data2VecVisionConfig` or `dict`): patch embedding + CLS (+ absolute positions or BEiT's
            shared relative position bias); `image_size`, `patch_size`, `num_channels`,
            `use_absolute_position_embeddings`, `use_shared_relative_position_bias`, `layer_norm_eps` are read.
        audio_config (`Data2VecAudioConfig` or `dict`): wav2vec 2.0's convolutional waveform encoder (16 kHz in,
            `conv_dim`/`conv_kernel`/`conv_stride`), its projection to H and its convolutional positions.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act: the shared blocks.
        hidden_dropout_prob, attention_probs_dropout_prob (`float`): dropout in the blocks.
        block_sharing (`str`): what the modalities share in each block. `"experts"`: one self-attention, one
            LayerNorm + FFN expert per modality routed by input type (VLMo's MoME / BEiT-3's Multiway); `"shared"`:
            every weight shared; `"separate"`: attention, norms and FFN per modality (three towers in one model — what
            exact conversion of the released unimodal checkpoints needs).
        pre_norm_modalities (`list[str]`): modalities whose blocks are pre-LN (LayerNorm before attention and FFN,
            BEiT/ViT); the others are post-LN (BERT, wav2vec 2.0). With `"shared"` blocks all or none.
        layer_scale_init_values (`dict[str, float]`): per modality, the initial value of CaiT's layer scale on the
            two residual branches (data2vec vision: 0.1); modalities not listed have none.
        num_fusion_layers (`int`): blocks on top that attend over a concatenated pair of modalities with one
            fusion FFN (VLMo's vision-language expert layers); 0 for none.
        projection_dim (`int`): width of the shared embedding space of `get_*_features`.
        mask_token_id (`int`): the tokenizer's `<mask>` id, which BERT masking of the text student puts in.
        top_k_layers (`dict[str, int]`): K, how many top blocks' FFN outputs are averaged into the teacher target
            (data2vec §3.3: text 10, image 6, audio 8 of 12).
        loss_beta (`dict[str, float]`): β of the smooth-L1 loss (Eq. 2); 0 gives the L2 loss (audio).
        target_norm (`dict[str, str]`): how each block's FFN output is normalised before the top-K average:
            `"layer"` (parameter-free LayerNorm over channels: data2vec's text and images) or `"instance"` (instance
            norm over the steps of a sample, per channel: data2vec's speech, and every modality in data2vec 2.0).
        mask_prob (`dict[str, float]`): text: share of tokens selected for BERT masking (15 %); image: share of
            patches covered by BEiT block masks (60 %); audio: probability p of a span starting at a frame (0.065).
        audio_mask_length (`int`): span length of audio masking (10 frames).
        image_min_mask_patches (`int`): smallest block of BEiT block masking (16 patches; fewer on small grids).
        ema_decay_start, ema_decay_end (`float`): τ0 and τe of the teacher (Eq. 1).
        ema_anneal_end_step (`int`): τn, updates over which τ rises linearly from τ0 to τe.
        num_mask_copies (`int`): M, masked copies of each sample that share one teacher pass (data2vec 2.0
            multi-mask); 1 is data2vec 1.0.
        encode_unmasked_only (`bool`): data2vec 2.0: the image student encodes only its visible patches and a light
            convolutional decoder fills in the masked ones (text and audio students keep mask embeddings).
        decoder_layers, decoder_kernel_size (`int`): the image decoder's conv blocks (data2vec 2.0: conv + LN + GELU
            + residual).
        cross_modal_loss (`str`): the term added on paired batches: `"regression"` (the student's pooled output of
            one modality regresses the teacher's pooled target of its partner), `"contrastive"` (symmetric InfoNCE on
            the projected pooled features with a learned temperature), `"both"` or `"none"`.
        cross_modal_weight (`float`): weight of that term.
        contrastive_temperature (`float`): initial τ of the contrastive term (CLIP: 0.07).
        num_labels / id2label: for the classification heads.
    """

    model_type = "data2vec_multimodal"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=Data2VecTextConfig),
        "vision_config": SubConfigSpec(config_class=Data2VecVisionConfig, init_kwargs={
            "use_absolute_position_embeddings": True, "use_mask_token": True}),
        "audio_config": SubConfigSpec(config_class=Data2VecAudioConfig),
    }

    text_config: dict | PretrainedConfig | None = None
    vision_config: dict | PretrainedConfig | None = None
    audio_config: dict | PretrainedConfig | None = None
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    block_sharing: str = "experts"
    pre_norm_modalities: list[str] | tuple[str, ...] = ("text", "image", "audio")
    layer_scale_init_values: dict | None = None
    num_fusion_layers: int = 0
    projection_dim: int = 256
    mask_token_id: int | None = None
    top_k_layers: dict | None = None
    loss_beta: dict | None = None
    target_norm: dict | None = None
    mask_prob: dict | None = None
    audio_mask_length: int = 10
    image_min_mask_patches: int = 16
    ema_decay_start: float = 0.999
    ema_decay_end: float = 0.9999
    ema_anneal_end_step: int = 30000
    num_mask_copies: int = 1
    encode_unmasked_only: bool = False
    decoder_layers: int = 3
    decoder_kernel_size: int = 3
    cross_modal_loss: str = "contrastive"
    cross_modal_weight: float = 1.0
    contrastive_temperature: float = 0.07

    def __post_init__(self, **kwargs):
        self.pre_norm_modalities = list(self.pre_norm_modalities)
        self.layer_scale_init_values = dict(self.layer_scale_init_values or {})
        self.top_k_layers = {"text": 10, "image": 6, "audio": 8} | dict(self.top_k_layers or {})
        self.loss_beta = {"text": 4.0, "image": 2.0, "audio": 0.0} | dict(self.loss_beta or {})
        self.target_norm = {"text": "layer", "image": "layer", "audio": "instance"} | dict(self.target_norm or {})
        self.mask_prob = {"text": 0.15, "image": 0.6, "audio": 0.065} | dict(self.mask_prob or {})
        self._check()
        super().__post_init__(**kwargs)
        self.check_sub_configs()

    def _check(self):
        if self.block_sharing not in BLOCK_SHARING:
            raise ValueError(f"block_sharing must be one of {BLOCK_SHARING}, got {self.block_sharing!r}.")
        if self.cross_modal_loss not in CROSS_MODAL_LOSSES:
            raise ValueError(f"cross_modal_loss must be one of {CROSS_MODAL_LOSSES}, got {self.cross_modal_loss!r}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads}).")
        for field in ("pre_norm_modalities", "layer_scale_init_values", "top_k_layers", "loss_beta", "target_norm",
                      "mask_prob"):
            unknown = set(getattr(self, field)) - set(MODALITIES)
            if unknown:
                raise ValueError(f"{field} names unknown modalities {sorted(unknown)}; the modalities are {MODALITIES}.")
        pre_norm = set(self.pre_norm_modalities)
        if self.block_sharing == "shared" and pre_norm not in (set(), set(MODALITIES)):
            raise ValueError("block_sharing='shared' shares the LayerNorms too, so their placement must be the same "
                             f"for every modality: pre_norm_modalities must list all of {MODALITIES} or none.")
        for modality, k in self.top_k_layers.items():
            if not 1 <= k <= self.num_hidden_layers:
                raise ValueError(f"top_k_layers[{modality!r}] must lie in [1, num_hidden_layers = "
                                 f"{self.num_hidden_layers}], got {k}.")
        for modality, norm in self.target_norm.items():
            if norm not in TARGET_NORMS:
                raise ValueError(f"target_norm[{modality!r}] must be one of {TARGET_NORMS}, got {norm!r}.")
        for modality, p in self.mask_prob.items():
            if not 0 < p < 1:
                raise ValueError(f"mask_prob[{modality!r}] must lie in (0, 1), got {p}.")
        if not 0 <= self.ema_decay_start <= self.ema_decay_end <= 1:
            raise ValueError(f"Expected 0 ≤ ema_decay_start ≤ ema_decay_end ≤ 1, got {self.ema_decay_start} and "
                             f"{self.ema_decay_end}.")
        if self.num_mask_copies < 1:
            raise ValueError(f"num_mask_copies must be ≥ 1, got {self.num_mask_copies}.")

    def check_sub_configs(self):
        """The input encoders must emit the blocks' width, and BEiT's relative position bias needs their head count."""
        widths = {"text": self.text_config.hidden_size, "image": self.vision_config.hidden_size,
                  "audio": self.audio_config.hidden_size}
        wrong = {m: w for m, w in widths.items() if w != self.hidden_size}
        if wrong:
            raise ValueError(f"Every modality's sub-config must have hidden_size = {self.hidden_size} (the shared "
                             f"blocks' width); got {wrong}.")
        if (self.vision_config.use_shared_relative_position_bias
                and self.vision_config.num_attention_heads != self.num_attention_heads):
            raise ValueError("vision_config.num_attention_heads must equal num_attention_heads when the relative "
                             "position bias is used (one bias per head).")


# Blocks (H, layers, heads, FFN), audio convolutions (channels, kernels, strides), positional conv (kernel, layers).
DATA2VEC_MULTIMODAL_SIZES = {
    "tiny": (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
             dict(conv_dim=(8, 16, 16), conv_kernel=(10, 8, 8), conv_stride=(5, 4, 4)), (5, 1)),
    # 16 kHz → 50 frames per second, as data2vec's encoder gives, through four convolutions that widen as they
    # downsample: measured on 1 CPU thread, 64 clips of 3 s, forward + backward took 1.10 s with (16, 32, 64, 64)
    # channels and strides (5, 4, 4, 4), 4× the rest of the model; these take 0.23 s.
    "small": (dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256),
              dict(conv_dim=(8, 32, 64, 64), conv_kernel=(10, 8, 8, 4), conv_stride=(10, 4, 4, 2)), (9, 2)),
    "base": (dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072), {}, (19, 5)),
}


# The fields of a size preset's blocks, which `data2vec_multimodal_config_for` lets a caller replace one by one.
BLOCK_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def data2vec_multimodal_config_for(size: str, vocab_size: int, mask_token_id: int, pad_token_id: int = 1,
                                   bos_token_id: int = 0, eos_token_id: int = 2, max_text_length: int = 64,
                                   image_size: int = 32, patch_size: int = 4, **overrides) -> Data2VecMultimodalConfig:
    """A fresh configuration: 'tiny' (tests, < 1 s), 'small' (H 64, 4 blocks: learns the built-in tri-modal data on 2
    CPU cores in minutes, with τ 0.99 → 0.999 over the first half of a ~1k-step run, K = 3 and the L2 loss, because
    the paper's τ and K assume 10⁵ updates and 12 blocks; instance-normalised targets for every modality, as data2vec
    2.0 has them: with LayerNorm targets, text and image targets collapsed to constants within 50 steps here) or 'base' (data2vec Base). The text positions, vocabulary
    and special ids come from the processor's tokenizer; `overrides` set any other field. The block fields
    `hidden_size`, `num_hidden_layers`, `num_attention_heads` and `intermediate_size` among them replace the preset's
    (a size sweep between presets): every input encoder then emits the new width, and the preset's defaults that
    follow the blocks (projection width, top-K) follow the new values."""
    if size not in DATA2VEC_MULTIMODAL_SIZES:
        raise ValueError(f"model_size must be one of {sorted(DATA2VEC_MULTIMODAL_SIZES)}, got {size!r}.")
    preset_blocks, audio, (pos_kernel, pos_layers) = DATA2VEC_MULTIMODAL_SIZES[size]
    blocks = preset_blocks | {name: overrides.pop(name) for name in BLOCK_FIELDS if name in overrides}
    wrong = {name: value for name, value in blocks.items()
             if isinstance(value, bool) or not isinstance(value, int) or value < 1}
    if wrong:
        raise ValueError(f"{', '.join(wrong)} must be positive integers, got {wrong}.")
    width = dict(hidden_size=blocks["hidden_size"], num_attention_heads=blocks["num_attention_heads"])
    text_config = Data2VecTextConfig(
        vocab_size=vocab_size, pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
        max_position_embeddings=max_text_length + pad_token_id + 1, type_vocab_size=1, layer_norm_eps=1e-5, **width)
    vision_config = Data2VecVisionConfig(image_size=image_size, patch_size=patch_size, use_mask_token=True,
                                         use_absolute_position_embeddings=True, **width)
    # The positional convolution's groups must divide H: the largest divisor up to min(16, H / 4) (16 for Base).
    groups = next(g for g in range(max(1, min(16, blocks["hidden_size"] // 4)), 0, -1) if blocks["hidden_size"] % g == 0)
    audio_config = Data2VecAudioConfig(conv_pos_kernel_size=pos_kernel, num_conv_pos_embeddings=pos_layers,
                                       num_conv_pos_embedding_groups=groups, **audio, **width)
    defaults = {} if size == "base" else dict(
        top_k_layers={m: max(1, blocks["num_hidden_layers"] - 1) for m in MODALITIES},
        loss_beta={m: 0.0 for m in MODALITIES}, target_norm={m: "instance" for m in MODALITIES}, ema_decay_start=0.99, ema_decay_end=0.999, ema_anneal_end_step=500,
        projection_dim=blocks["hidden_size"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        image_min_mask_patches=4)
    # A per-modality override (top_k_layers={"image": 2}) changes that modality's entry of the preset, not the rest.
    settings = defaults | {k: defaults[k] | v if isinstance(defaults.get(k), dict) else v for k, v in overrides.items()}
    return Data2VecMultimodalConfig(text_config=text_config, vision_config=vision_config, audio_config=audio_config,
                                    mask_token_id=mask_token_id, **blocks, **settings)
