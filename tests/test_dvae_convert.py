import contextlib
import math
import os
import sys
import types
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import AutoImageProcessor, AutoModel

import hf_mmdl  # noqa: F401  (registers the Auto classes)
from hf_mmdl.convert.dvae_original import (
    convert_dvae_checkpoint,
    load_dall_e_module,
    original_to_hf_state_dict,
)
from hf_mmdl.modeling import DiscreteVAEConfig, DiscreteVAEModel, map_pixels

# Tiny sizes with the released structure (4 groups of 2 blocks): 74 encoder and 76 decoder tensors, 16×16 → 2×2.
TINY = {"n_hid": 8, "vocab_size": 32, "n_init": 8}
RELEASED = {"n_hid": 256, "vocab_size": 8192, "n_init": 128}


def spec_state_dicts(n_hid, vocab_size, n_init, n_blk_per_group=2, group_count=4, channels=3, device="cpu"):
    """Encoder and decoder tensors named and shaped by the rules of specs/autoencoders.md §3 (random values; shapes
    only on the meta device)."""
    generator = torch.Generator().manual_seed(0)

    def make(*shape):
        return torch.empty(*shape, device="meta") if device == "meta" else torch.randn(*shape, generator=generator) / 4

    def conv(state, name, n_in, n_out, kernel):
        state[f"{name}.w"], state[f"{name}.b"] = make(n_out, n_in, kernel, kernel), make(n_out)

    def groups(state, widths, first_in, kernels):
        for g, width in enumerate(widths, start=1):
            for b in range(1, n_blk_per_group + 1):
                n_in = (first_in if g == 1 else widths[g - 2]) if b == 1 else width
                prefix, hidden = f"blocks.group_{g}.block_{b}", width // 4
                convs = zip((n_in, hidden, hidden, hidden), (hidden, hidden, hidden, width), kernels)
                for i, (conv_in, conv_out, kernel) in enumerate(convs, start=1):
                    conv(state, f"{prefix}.res_path.conv_{i}", conv_in, conv_out, kernel)
                if n_in != width:
                    conv(state, f"{prefix}.id_path", n_in, width, 1)

    encoder, decoder = {}, {}
    conv(encoder, "blocks.input", channels, n_hid, 7)
    groups(encoder, [n_hid * 2**g for g in range(group_count)], n_hid, (3, 3, 3, 1))
    conv(encoder, "blocks.output.conv", n_hid * 2 ** (group_count - 1), vocab_size, 1)
    conv(decoder, "blocks.input", vocab_size, n_init, 1)
    groups(decoder, [n_hid * 2 ** (group_count - 1 - g) for g in range(group_count)], n_init, (1, 3, 3, 3))
    conv(decoder, "blocks.output.conv", n_hid, 2 * channels, 1)
    return encoder, decoder


# Stand-ins for openai/DALL-E's classes (same attributes, parameters, submodule names and forward; `group_count`
# is a fixed 4 there), pickled under the dall_e names below. No dall_e package is installed.
class Conv2d(nn.Module):
    def __init__(self, n_in, n_out, kw):
        super().__init__()
        self.n_in, self.n_out, self.kw = n_in, n_out, kw
        self.use_float16, self.device, self.requires_grad = True, torch.device("cpu"), False
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw**2))
        self.b = nn.Parameter(torch.randn(n_out) / 10)  # zero in a fresh original; not here, to test the mapping

    def forward(self, x):
        return F.conv2d(x, self.w, self.b, padding=(self.kw - 1) // 2)


class _Block(nn.Module):
    kernels: tuple

    def __init__(self, n_in, n_out, n_layers):
        super().__init__()
        self.n_in, self.n_out, self.n_layers = n_in, n_out, n_layers
        self.n_hid, self.post_gain = n_out // 4, 1 / n_layers**2
        self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        widths = (n_in, self.n_hid, self.n_hid, self.n_hid, n_out)
        layers = []
        for i, kernel in enumerate(self.kernels):
            layers += [(f"relu_{i + 1}", nn.ReLU()), (f"conv_{i + 1}", Conv2d(widths[i], widths[i + 1], kernel))]
        self.res_path = nn.Sequential(OrderedDict(layers))

    def forward(self, x):
        return self.id_path(x) + self.post_gain * self.res_path(x)


class EncoderBlock(_Block):
    kernels = (3, 3, 3, 1)


class DecoderBlock(_Block):
    kernels = (1, 3, 3, 3)


def _pool():
    return "pool", nn.MaxPool2d(kernel_size=2)


def _upsample():
    return "upsample", nn.Upsample(scale_factor=2, mode="nearest")


def _output(n_in, n_out):
    return "output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", Conv2d(n_in, n_out, 1))]))


def _groups(widths, first_in, block, n_blk_per_group, resample):
    n_layers, groups = len(widths) * n_blk_per_group, []
    for g, width in enumerate(widths):
        n_in = first_in if g == 0 else widths[g - 1]
        blocks = [(f"block_{i + 1}", block(n_in if i == 0 else width, width, n_layers)) for i in range(n_blk_per_group)]
        if g < len(widths) - 1:
            blocks.append(resample())
        groups.append((f"group_{g + 1}", nn.Sequential(OrderedDict(blocks))))
    return groups


class Encoder(nn.Module):
    def __init__(self, n_hid=8, vocab_size=32, n_blk_per_group=2, input_channels=3, group_count=4):
        super().__init__()
        self.n_hid, self.n_blk_per_group, self.input_channels, self.vocab_size = (
            n_hid, n_blk_per_group, input_channels, vocab_size
        )
        self.device, self.requires_grad, self.use_mixed_precision = torch.device("cpu"), False, True
        widths = [n_hid * 2**g for g in range(group_count)]
        self.blocks = nn.Sequential(OrderedDict([
            ("input", Conv2d(input_channels, n_hid, 7)),
            *_groups(widths, n_hid, EncoderBlock, n_blk_per_group, _pool),
            _output(widths[-1], vocab_size),
        ]))

    def forward(self, x):
        return self.blocks(x)


class Decoder(nn.Module):
    def __init__(self, n_hid=8, vocab_size=32, n_init=8, n_blk_per_group=2, output_channels=3, group_count=4):
        super().__init__()
        self.n_init, self.n_hid, self.n_blk_per_group, self.output_channels, self.vocab_size = (
            n_init, n_hid, n_blk_per_group, output_channels, vocab_size
        )
        self.device, self.requires_grad, self.use_mixed_precision = torch.device("cpu"), False, True
        widths = [n_hid * 2 ** (group_count - 1 - g) for g in range(group_count)]
        self.blocks = nn.Sequential(OrderedDict([
            ("input", Conv2d(vocab_size, n_init, 1)),
            *_groups(widths, n_init, DecoderBlock, n_blk_per_group, _upsample),
            _output(n_hid, 2 * output_channels),
        ]))

    def forward(self, x):
        return self.blocks(x)


DALL_E_NAMES = {Conv2d: "dall_e.utils", EncoderBlock: "dall_e.encoder", Encoder: "dall_e.encoder",
                DecoderBlock: "dall_e.decoder", Decoder: "dall_e.decoder"}
for _cls, _module in DALL_E_NAMES.items():
    _cls.__module__ = _module


@contextlib.contextmanager
def fake_dall_e_package():
    """Makes the stand-ins importable under their dall_e names, as pickling needs, only while saving. Their source is
    this file, which a legacy-format save stores with each class, as a real one does."""
    modules = {"dall_e": types.ModuleType("dall_e")}
    for cls, name in DALL_E_NAMES.items():
        setattr(modules.setdefault(name, types.ModuleType(name)), cls.__qualname__, cls)
        modules[name].__file__ = __file__
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in modules:
            del sys.modules[name]


def save_original(module, path, legacy=False):
    """`torch.save(module)` as the release did (the zip format, or the pre-1.6 legacy one)."""
    with fake_dall_e_package():
        torch.save(module, path, _use_new_zipfile_serialization=not legacy)
    assert "dall_e" not in sys.modules
    return path


def one_hot(tokens, vocab_size):
    return F.one_hot(tokens, vocab_size).permute(0, 3, 1, 2).float()


def test_spec_shapes_match_the_original_classes_and_the_released_key_list():
    encoder_state, decoder_state = spec_state_dicts(**TINY)
    for ours, original in ((encoder_state, Encoder().state_dict()), (decoder_state, Decoder().state_dict())):
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in original.items()}
    encoder_state, decoder_state = spec_state_dicts(**RELEASED, device="meta")
    assert (len(encoder_state), len(decoder_state)) == (74, 76)
    assert sum(t.numel() for t in encoder_state.values()) == 53_786_240
    assert sum(t.numel() for t in decoder_state.values()) == 43_829_766
    config, state_dict = original_to_hf_state_dict(encoder_state, decoder_state)
    defaults = DiscreteVAEConfig()
    for name in ("group_count", "n_blk_per_group", "n_hid", "vocab_size", "n_init", "in_channels"):
        assert getattr(config, name) == getattr(defaults, name), name
    assert len(state_dict) == 150
    assert state_dict["encoder.blocks.group_2.block_1.id_path.weight"].shape == (512, 256, 1, 1)
    assert state_dict["decoder.blocks.output.conv.bias"] is decoder_state["blocks.output.conv.b"]


@pytest.mark.parametrize("sizes", [{}, {"n_blk_per_group": 1, "group_count": 3, "channels": 1, "n_init": 16}])
def test_every_original_tensor_is_mapped_once_and_gives_the_original_outputs(sizes):
    encoder_state, decoder_state = spec_state_dicts(**TINY | sizes)
    config, state_dict = original_to_hf_state_dict(encoder_state, decoder_state)
    originals = [*encoder_state.values(), *decoder_state.values()]
    assert sorted(map(id, state_dict.values())) == sorted(map(id, originals))  # each tensor once, none copied
    model = DiscreteVAEModel(config).eval()
    model.load_state_dict(state_dict, strict=True)
    shared = {k: getattr(config, k) for k in ("n_hid", "vocab_size", "n_blk_per_group", "group_count")}
    encoder = Encoder(input_channels=config.in_channels, **shared)
    decoder = Decoder(output_channels=config.in_channels, n_init=config.n_init, **shared)
    encoder.load_state_dict(encoder_state, strict=True)
    decoder.load_state_dict(decoder_state, strict=True)
    pixels = map_pixels(torch.rand(2, config.in_channels, 16, 16, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        logits = encoder(pixels)
        torch.testing.assert_close(model.encoder(pixels), logits, rtol=0, atol=0)
        tokens = logits.argmax(1)
        assert torch.equal(model.get_codebook_indices(pixels), tokens)
        codes = one_hot(tokens, config.vocab_size)
        torch.testing.assert_close(model.decoder(codes), decoder(codes), rtol=0, atol=0)


def test_unmapped_missing_and_mis_shaped_tensors_are_listed():
    encoder_state, decoder_state = spec_state_dicts(**TINY)
    with pytest.raises(ValueError, match=r"unmapped: encoder\.blocks\.output\.scale"):
        original_to_hf_state_dict(encoder_state | {"blocks.output.scale": torch.ones(1)}, decoder_state)
    without_bias = {k: v for k, v in decoder_state.items() if k != "blocks.output.conv.b"}
    with pytest.raises(ValueError, match=r"missing: decoder\.blocks\.output\.conv\.bias"):
        original_to_hf_state_dict(encoder_state, without_bias)
    _, wider_decoder = spec_state_dicts(**TINY | {"n_hid": 16})
    with pytest.raises(ValueError, match=r"mis-shaped: decoder\.blocks\.group_1\.block_1\.id_path\.weight"):
        original_to_hf_state_dict(encoder_state, wider_decoder)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pickled_modules_load_without_dall_e(tmp_path, legacy):
    encoder, decoder = Encoder(), Decoder()
    encoder_path = save_original(encoder, tmp_path / "encoder.pkl", legacy=legacy)
    decoder_path = save_original(decoder, tmp_path / "decoder.pkl", legacy=legacy)
    for module, path, kind in ((encoder, encoder_path, "encoder"), (decoder, decoder_path, "decoder")):
        loaded = load_dall_e_module(path, kind=kind)
        assert loaded.keys() == module.state_dict().keys()
        for key, tensor in module.state_dict().items():
            assert type(loaded[key]) is torch.Tensor and torch.equal(loaded[key], tensor), key
    assert "dall_e" not in sys.modules
    with pytest.raises(ValueError, match="holds the DALL-E encoder, but the decoder was expected"):
        load_dall_e_module(encoder_path, kind="decoder")


def test_pickles_convert_to_a_folder_that_auto_classes_load_with_the_original_outputs(tmp_path):
    torch.manual_seed(0)
    encoder, decoder = Encoder(), Decoder()
    encoder_path = save_original(encoder, tmp_path / "encoder.pkl")
    decoder_path = save_original(decoder, tmp_path / "decoder.pkl")
    out = convert_dvae_checkpoint(encoder_path, decoder_path, tmp_path / "hf" / "dvae", image_size=32)
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["dvae"]  # no staging folder left behind
    model = AutoModel.from_pretrained(out)
    processor = AutoImageProcessor.from_pretrained(out)
    assert isinstance(model, DiscreteVAEModel) and model.config.n_hid == 8 and model.config.vocab_size == 32
    assert processor.size.shortest_edge == 32 and (processor.crop_size.height, processor.crop_size.width) == (32, 32)
    assert processor.do_map_pixels
    pixels = map_pixels(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        tokens = encoder(pixels).argmax(1)
        assert torch.equal(model.get_codebook_indices(pixels), tokens)
        expected = decoder(one_hot(tokens, 32))
        torch.testing.assert_close(model.decoder(one_hot(tokens, 32)), expected, rtol=0, atol=0)
        torch.testing.assert_close(model.decoder.decode_indices(tokens), expected)


def test_plain_state_dicts_in_original_names_convert_too(tmp_path):
    encoder_state, decoder_state = spec_state_dicts(**TINY)
    torch.save(encoder_state, tmp_path / "encoder.pt")
    save_file(decoder_state, tmp_path / "decoder.safetensors")
    out = convert_dvae_checkpoint(tmp_path / "encoder.pt", tmp_path / "decoder.safetensors", tmp_path / "hf")
    model = AutoModel.from_pretrained(out)
    torch.testing.assert_close(model.decoder.blocks.input.weight, decoder_state["blocks.input.w"], rtol=0, atol=0)
    torch.testing.assert_close(model.encoder.blocks.output.conv.bias, encoder_state["blocks.output.conv.b"])
    assert AutoImageProcessor.from_pretrained(out).crop_size.height == 256


class _Payload:
    """Pickles as `call(argument)`: unpickling it freely would run that call."""

    def __init__(self, call, argument):
        self.call, self.argument = call, argument

    def __reduce__(self):
        return self.call, (self.argument,)


@pytest.mark.parametrize(
    "call, command", [(os.system, "touch {marker}"), (exec, "open({marker!r}, 'w').close()")], ids=["os.system", "exec"]
)
def test_pickles_with_other_globals_are_refused_without_running_them(tmp_path, call, command):
    marker = tmp_path / "ran"
    encoder = Encoder()
    encoder.payload = _Payload(call, command.format(marker=str(marker)))
    save_original(encoder, tmp_path / "encoder.pkl")
    with pytest.raises(ValueError, match="is not a DALL-E dVAE pickle: it refers to .*(system|exec).* refused before"):
        load_dall_e_module(tmp_path / "encoder.pkl")
    with pytest.raises(ValueError, match="not a DALL-E dVAE pickle"):
        convert_dvae_checkpoint(tmp_path / "encoder.pkl", tmp_path / "encoder.pkl", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_foreign_modules_and_objects_are_refused(tmp_path):
    torch.save(nn.Sequential(nn.ReLU()), tmp_path / "sequential.pt")
    with pytest.raises(ValueError, match="pickles a torch.nn.modules.container.Sequential, not a DALL-E dVAE"):
        load_dall_e_module(tmp_path / "sequential.pt")
    torch.save({"blocks.input.w": torch.zeros(4, 3, 7, 7), "epoch": 3}, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match="no tensors in epoch"):
        load_dall_e_module(tmp_path / "mixed.pt")
    torch.save({"weight": torch.zeros(4, 3, 5, 5)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="holds no DALL-E encoder or decoder weights"):
        load_dall_e_module(tmp_path / "other.pt")


def test_missing_corrupt_or_swapped_files_give_clear_errors_and_no_output(tmp_path):
    encoder = save_original(Encoder(), tmp_path / "encoder.pkl")
    decoder = save_original(Decoder(), tmp_path / "decoder.pkl")
    (tmp_path / "garbage.pkl").write_bytes(b"not a checkpoint at all")
    (tmp_path / "truncated.pkl").write_bytes(decoder.read_bytes()[:5000])
    (tmp_path / "garbage.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="No file at .*nothing.pkl.*decoder"):
        convert_dvae_checkpoint(encoder, tmp_path / "nothing.pkl", out)
    for corrupt in ("garbage.pkl", "truncated.pkl"):
        with pytest.raises(ValueError, match=f"{corrupt} could not be read as a torch file.*corrupt"):
            convert_dvae_checkpoint(encoder, tmp_path / corrupt, out)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        convert_dvae_checkpoint(encoder, tmp_path / "garbage.safetensors", out)
    with pytest.raises(ValueError, match="are the two paths swapped"):
        convert_dvae_checkpoint(decoder, encoder, out)
    with pytest.raises(ValueError, match="image_size .* multiple of 8"):
        convert_dvae_checkpoint(encoder, decoder, out, image_size=36)
    assert not out.exists() and not list(tmp_path.glob(".out*"))  # nor a staging folder
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        convert_dvae_checkpoint(encoder, decoder, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
