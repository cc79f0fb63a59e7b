"""Parity of `hf-mmdl convert vokenizer-matcher` against the released matcher code, with random weights.

Builds the original `xmatching` JointModel (a 3-layer BERT standing in for bert-base-uncased, torchvision's
ResNeXt-101 32x8d with frozen batch norm, 64-d MLP heads; random weights and batch-norm statistics), saves its state
dict as BEST.pth, converts it, and prints the largest differences in token keys, image keys, relevance, the paired
hinge loss and top-1 vokens:

    python tools/vokenizer_parity.py --original path/to/vokenization [--torchvision path/to/site-dir]

`--original` is a checkout of airsplay/vokenization (read, never imported as a package: its `from transformers
import *` names models transformers 5 no longer has, and its BERT would be downloaded). torchvision must be
importable (`--torchvision` adds a directory holding it to the path); only its model definitions are used.
"""

import argparse
import sys
import tempfile
import types
from pathlib import Path

import torch

ORIGINAL_LANG_MODELS = ["BertModel", "BertTokenizer", "OpenAIGPTModel", "OpenAIGPTTokenizer", "GPT2Model", "GPT2Tokenizer",
                        "CTRLModel", "CTRLTokenizer", "TransfoXLModel", "TransfoXLTokenizer", "XLNetModel", "XLNetTokenizer",
                        "XLMModel", "XLMTokenizer", "DistilBertModel", "DistilBertTokenizer", "RobertaModel",
                        "RobertaTokenizer", "XLMRobertaModel", "XLMRobertaTokenizer"]


def original_modules(repo: Path, text_config):
    """The released `xmatching.model` and `xmatching.loss` namespaces, with the BERT built from `text_config`."""
    import transformers
    from transformers import BertConfig, BertModel

    # torchvision's compiled operators may belong to another torch build; its model definitions need none of them.
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    frozen = {}
    exec((repo / "xmatching" / "frozen_batch_norm.py").read_text(), frozen)
    model = {name: getattr(transformers, name, type(name, (), {})) for name in ORIGINAL_LANG_MODELS}
    model |= {"FrozenBatchNorm2d": frozen["FrozenBatchNorm2d"], "__name__": "xmatching_model"}
    source = (repo / "xmatching" / "model.py").read_text()
    exec(source.replace("from transformers import *", "").replace("from .frozen_batch_norm import FrozenBatchNorm2d", ""),
         model)
    # No download: "bert-base-uncased" becomes a random BERT of `text_config`; torchvision ≥ 0.15 says weights=None.
    model["BertModel"] = type("OfflineBert", (BertModel,), {"from_pretrained": classmethod(
        lambda cls, weight, output_hidden_states: BertModel(BertConfig.from_dict(
            text_config.to_dict() | {"output_hidden_states": output_hidden_states})))})
    model["LANG_MODELS"]["bert"] = (model["BertModel"], None, "bert-base-uncased")
    model["get_visn_arch"] = lambda arch: (lambda pretrained: getattr(torchvision.models, arch)(weights=None))
    loss = {}
    exec((repo / "xmatching" / "loss.py").read_text(), loss)
    return model, loss


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, type=Path, help="A checkout of airsplay/vokenization.")
    parser.add_argument("--torchvision", default=None, help="A directory to put on sys.path for torchvision.")
    args = parser.parse_args(argv)
    from transformers import BertConfig

    from hf_mmdl import VokenizerModel
    from hf_mmdl.convert.vokenizer_original import convert_vokenizer_matcher

    # Only after transformers' image classes are imported: it checks for torchvision's compiled operators.
    if args.torchvision:
        sys.path.insert(0, args.torchvision)

    text = BertConfig(vocab_size=305, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
                      max_position_embeddings=64)
    xmatching, losses = original_modules(args.original, text)
    torch.manual_seed(0)
    lang = xmatching["LangModel"](64, arch="bert", layers=(-1, -2, -4), pretrained=True, finetuning=False)
    visn = xmatching["VisnModel"](64, arch="resnext101_32x8d", pretrained=False, finetuning=False)
    joint = xmatching["JointModel"](lang, visn).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # batch norm away from the identity, so that its conversion matters
        for name, buffer in joint.visn_model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) * 0.5 + 0.75)
            else:
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1 + name.endswith("weight"))
    folder = Path(tempfile.mkdtemp())
    torch.save(joint.state_dict(), folder / "BEST.pth")
    ours = VokenizerModel.from_pretrained(convert_vokenizer_matcher(folder / "BEST.pth", folder / "converted",
                                                                    num_attention_heads=4, lang_layers="-4,-2,-1")).eval()
    ids = torch.randint(0, text.vocab_size, (4, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 9:], mask[3, 5:] = 0, 0
    pixels = torch.randn(4, 3, 224, 224, generator=generator)
    with torch.no_grad():
        text_keys, image_keys = joint((ids, mask), (pixels,))
        loss = losses["paired_hinge_rank_loss"](text_keys, image_keys, mask, 0.5)
        out = ours(input_ids=ids, attention_mask=mask, pixel_values=pixels)
    real = mask.bool()
    relevance = text_keys @ image_keys.T
    report = {
        "original tensors": len(joint.state_dict()),
        "token keys (real tokens) max abs diff": (out.text_keys - text_keys)[real].abs().max().item(),
        "image keys max abs diff": (out.image_keys - image_keys).abs().max().item(),
        "relevance (real tokens) max abs diff": (out.logits_per_token - relevance)[real].abs().max().item(),
        "paired hinge loss abs diff": abs(out.loss.item() - loss.item()),
        "top-1 vokens equal": bool(torch.equal(relevance.argmax(-1), out.logits_per_token.argmax(-1))),
    }
    for name, value in report.items():
        print(f"{name}: {value}")
    return report


if __name__ == "__main__":
    main()
