"""Convert the released DALL-E dVAE (openai/DALL-E `encoder.pkl`, `decoder.pkl`) into a `from_pretrained` folder.

The release pickles whole modules (`torch.save(module)`) of classes from the `dall_e` package: `Encoder` / `Decoder`,
their blocks, and a `Conv2d` whose parameters are `w` and `b`. Loading them the usual way needs that package, full
unpickling and, on torch ≥ 1.11, a patch for the pickled `nn.Upsample` (openai/DALL-E#54). None of that is needed
here: `torch.load` reads the files with an unpickler that maps every module class the release uses to an inert
stand-in keeping only its pickled attributes, and refuses any other global before it could be called. The weights
are then renamed to `nn.Conv2d` names (`.w` → `.weight`, `.b` → `.bias`) under `encoder.` / `decoder.`.

    from hf_mmdl.convert.dvae_original import convert_dvae_checkpoint
    convert_dvae_checkpoint("encoder.pkl", "decoder.pkl", "dall-e-dvae")
"""

import pickle
import re
import tempfile
import types
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..modeling import DiscreteVAEConfig, DiscreteVAEModel
from ..processing import DiscreteVAEImageProcessor

# Every class a released pickle instantiates: the dall_e modules and the torch.nn layers inside them.
_PICKLED_MODULE_CLASSES = (
    "dall_e.encoder.Encoder",
    "dall_e.encoder.EncoderBlock",
    "dall_e.decoder.Decoder",
    "dall_e.decoder.DecoderBlock",
    "dall_e.utils.Conv2d",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.linear.Identity",
    "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.upsampling.Upsample",
)
_ROOT_CLASSES = ("dall_e.encoder.Encoder", "dall_e.decoder.Decoder")
# The input convolution tells the two halves apart: 7×7 on pixels (encoder), 1×1 on one-hot codes (decoder).
_INPUT_KERNEL_OF = {"encoder": 7, "decoder": 1}
_ORIGINAL_PARAMETER = re.compile(r"^(blocks\..+)\.(w|b)$")
_IMAGE_MODES = {1: "L", 3: "RGB"}


class _PickledModule:
    """Inert stand-in for a module class named in a DALL-E pickle. The unpickler creates it with `__new__` and fills
    its `__dict__` with the pickled attributes (`_parameters`, `_modules`, ...); it has no methods, so reading a
    pickle runs neither the `dall_e` code nor any torch.nn module code."""

    pickled_name: str


_STAND_INS = {
    name: type(name.rsplit(".", 1)[1], (_PickledModule,), {"pickled_name": name}) for name in _PICKLED_MODULE_CLASSES
}
# What else the pickled modules and their tensors need (protocol 2 spells `builtins` as `__builtin__`).
_ALLOWED_GLOBALS = _STAND_INS | {
    "collections.OrderedDict": OrderedDict,
    "__builtin__.set": set,
    "builtins.set": set,
    "torch.device": torch.device,
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
}


def _pickled_state(module: _PickledModule, prefix: str = "") -> dict[str, object]:
    """What `state_dict()` of the live module would hold (parameters and buffers, depth first), read off the
    stand-ins; anything in place of a submodule is kept as a value, for the caller to refuse."""
    attributes = vars(module)
    tensors = attributes.get("_parameters", {}) | attributes.get("_buffers", {})
    state = {prefix + name: value for name, value in tensors.items()}
    for name, child in attributes.get("_modules", {}).items():
        if isinstance(child, _PickledModule):
            state |= _pickled_state(child, f"{prefix}{name}.")
        else:
            state[prefix + name] = child
    return state


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _DallEUnpickler(pickle.Unpickler):
    """Resolves only the names a DALL-E dVAE pickle uses, the module classes to inert stand-ins; anything else is
    refused when it is named, before it could be called. (torch resolves storage names itself before asking.)"""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[f"{module}.{name}"]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


# Given to `torch.load` as its `pickle_module`, for the zip format and the legacy one alike: torch's weights-only
# unpickler cannot read legacy whole-module pickles, which store each module class as a persistent id.
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="hf_mmdl_dall_e_pickle",
    Unpickler=_DallEUnpickler,
    load=lambda file, **kwargs: _DallEUnpickler(file, **kwargs).load(),
)


def _read(path: Path) -> object:
    """The unpickled content of a `.pt`/`.pkl` file (restricted as described above) or a `.safetensors` file."""
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except SafetensorError as error:
            raise ValueError(f"{path} is not a readable safetensors file ({error}); download it again.") from error
    try:
        with warnings.catch_warnings():  # legacy pickles name module classes whose source the stand-ins lack
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code for container")
            # weights_only=True cannot read whole-module pickles in torch's legacy format; the restricted pickle
            # module refuses every global but the release's classes (as inert stand-ins) before it could run.
            return torch.load(path, map_location="cpu", pickle_module=_RESTRICTED_PICKLE, weights_only=False)
    except _RefusedGlobal as refused:
        raise ValueError(
            f"{path} is not a DALL-E dVAE pickle: it refers to {refused}, which openai/DALL-E's encoder.pkl and "
            "decoder.pkl never do. It was refused before anything in it ran."
        ) from None
    except Exception as error:
        raise ValueError(
            f"{path} could not be read as a torch file ({type(error).__name__}: {error}): it is corrupt, truncated "
            "or not a DALL-E dVAE file. Download it again."
        ) from error


def _kind(state_dict: dict[str, torch.Tensor], path: Path) -> str:
    weight = state_dict.get("blocks.input.w")
    kernel = weight.shape[-1] if isinstance(weight, torch.Tensor) and weight.ndim == 4 else None
    for kind, input_kernel in _INPUT_KERNEL_OF.items():
        if kernel == input_kernel:
            return kind
    raise ValueError(
        f"{path} holds no DALL-E encoder or decoder weights: expected 'blocks.input.w' with a 7×7 (encoder) or "
        f"1×1 (decoder) kernel, got {tuple(weight.shape) if isinstance(weight, torch.Tensor) else 'none'}."
    )


def load_dall_e_module(path: str | Path, kind: str | None = None) -> dict[str, torch.Tensor]:
    """The original-named state dict (`blocks.input.w`, ...) of a released `encoder.pkl` / `decoder.pkl`, or of a
    plain state dict in those names saved with `torch.save` or as `.safetensors`, read without the `dall_e` package
    and without running pickled code. With `kind` ("encoder" or "decoder"), a file holding the other half is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No file at {path}. Pass the path of the released DALL-E {kind or 'encoder or decoder'} "
            f"({kind or 'encoder'}.pkl from https://cdn.openai.com/dall-e/) or of a state dict in its names."
        )
    content = _read(path)
    if isinstance(content, _PickledModule):
        if content.pickled_name not in _ROOT_CLASSES:
            raise ValueError(f"{path} pickles a {content.pickled_name}, not a DALL-E dVAE Encoder or Decoder.")
        content = _pickled_state(content)
    if not isinstance(content, dict):
        # A ValueError, not TypeError: the file's content is wrong, not the type of an argument.
        raise ValueError(f"{path} holds a {type(content).__name__}, not a DALL-E dVAE module or state dict.")  # noqa: TRY004
    if not_tensors := [key for key, value in content.items() if not isinstance(value, torch.Tensor)]:
        raise ValueError(f"{path} is not a DALL-E dVAE module or state dict: no tensors in {', '.join(not_tensors)}.")
    state_dict = {key: tensor.detach() for key, tensor in content.items()}
    found = _kind(state_dict, path)
    if kind is not None and found != kind:
        raise ValueError(f"{path} holds the DALL-E {found}, but the {kind} was expected: are the two paths swapped?")
    return state_dict


def _indices(state_dict: dict[str, torch.Tensor], pattern: str) -> set[int]:
    return {int(match[1]) for key in state_dict if (match := re.match(pattern, key))}


def config_from_original_state_dicts(
    encoder_state: dict[str, torch.Tensor], decoder_state: dict[str, torch.Tensor]
) -> DiscreteVAEConfig:
    """Read the architecture off the tensor names and shapes (the release: 4 groups of 2 blocks, 256 hidden channels,
    8,192 codes embedded in 128 dimensions, RGB)."""
    try:
        n_hid, in_channels = encoder_state["blocks.input.w"].shape[:2]
        vocab_size = encoder_state["blocks.output.conv.w"].shape[0]
        n_init = decoder_state["blocks.input.w"].shape[0]
    except KeyError as error:
        raise ValueError(f"The original state dicts lack {error}: are these the DALL-E encoder and decoder?") from None
    return DiscreteVAEConfig(
        group_count=len(_indices(encoder_state, r"^blocks\.group_(\d+)\.")),
        n_blk_per_group=len(_indices(encoder_state, r"^blocks\.group_1\.block_(\d+)\.")),
        n_hid=n_hid,
        vocab_size=vocab_size,
        n_init=n_init,
        in_channels=in_channels,
    )


def _rename(state_dict: dict[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`blocks.….w` / `.b` → `{prefix}blocks.….weight` / `.bias`, plus the original names that match neither."""
    renamed, unmapped = {}, []
    for key, tensor in state_dict.items():
        if match := _ORIGINAL_PARAMETER.match(key):
            renamed[f"{prefix}{match[1]}.{'weight' if match[2] == 'w' else 'bias'}"] = tensor
        else:
            unmapped.append(prefix + key)
    return renamed, unmapped


def original_to_hf_state_dict(
    encoder_state: dict[str, torch.Tensor], decoder_state: dict[str, torch.Tensor]
) -> tuple[DiscreteVAEConfig, dict[str, torch.Tensor]]:
    """The config and `DiscreteVAEModel` state dict of an original encoder and decoder. Renaming is one-to-one, and
    the result must hold exactly the model's tensors with their shapes; otherwise the error lists what is unmapped,
    missing or mis-shaped."""
    config = config_from_original_state_dicts(encoder_state, decoder_state)
    encoder, unmapped_encoder = _rename(encoder_state, "encoder.")
    decoder, unmapped_decoder = _rename(decoder_state, "decoder.")
    state_dict = encoder | decoder
    with torch.device("meta"):
        expected = {key: tensor.shape for key, tensor in DiscreteVAEModel(config).state_dict().items()}
    problems = {
        "unmapped": unmapped_encoder + unmapped_decoder + sorted(state_dict.keys() - expected.keys()),
        "missing": sorted(expected.keys() - state_dict.keys()),
        "mis-shaped": [
            f"{key} {tuple(state_dict[key].shape)} ≠ {tuple(shape)}"
            for key, shape in expected.items()
            if key in state_dict and state_dict[key].shape != shape
        ],
    }
    if any(problems.values()):
        details = "; ".join(f"{kind}: {', '.join(keys)}" for kind, keys in problems.items() if keys)
        raise ValueError(
            f"The original weights do not fit a DiscreteVAEModel with {config.group_count} groups of "
            f"{config.n_blk_per_group} blocks, n_hid={config.n_hid}, vocab_size={config.vocab_size}, "
            f"n_init={config.n_init} (the encoder and decoder must share these sizes). {details}"
        )
    return config, state_dict


def convert_dvae_checkpoint(
    encoder_path: str | Path, decoder_path: str | Path, output_dir: str | Path, image_size: int = 256
) -> Path:
    """Write a `from_pretrained` folder (safetensors model and a `DiscreteVAEImageProcessor` resizing to
    `image_size`, 256 for the release) for an original encoder and decoder. Everything is read and checked before
    anything is written, and the folder is written next to `output_dir` and then renamed, so a failure never leaves a
    half-written `output_dir`."""
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir} exists and is not an empty folder; choose a new output folder.")
    config, state_dict = original_to_hf_state_dict(
        load_dall_e_module(encoder_path, kind="encoder"), load_dall_e_module(decoder_path, kind="decoder")
    )
    if image_size % config.downsampling_factor:
        raise ValueError(f"image_size ({image_size}) must be a multiple of {config.downsampling_factor}.")
    if config.in_channels not in _IMAGE_MODES:
        raise ValueError(f"The image processor handles 1 or 3 channels, but the encoder reads {config.in_channels}.")
    with torch.device("meta"):
        model = DiscreteVAEModel(config)
    model.load_state_dict(state_dict, strict=True, assign=True)  # the original tensors, without a random init first
    processor = DiscreteVAEImageProcessor(
        image_mode=_IMAGE_MODES[config.in_channels],
        map_pixels_eps=config.logit_laplace_eps,
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir.parent, prefix=f".{output_dir.name}.") as staging:
        staged = Path(staging) / output_dir.name
        model.save_pretrained(staged)
        processor.save_pretrained(staged)
        staged.replace(output_dir)
    return output_dir
