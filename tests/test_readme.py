import random
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SETUP = 'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[test]"'


def readme_commands() -> list[str]:
    head = (ROOT / "README.md").read_text().split("---")[0]
    return [line for line in head.splitlines() if line.startswith("python3 -m venv")]


def test_readme_opens_with_the_main_job_and_test_commands():
    main_job, tests = readme_commands()
    assert main_job == f"{SETUP} && hf-mmdl quickstart"
    assert tests == f"{SETUP} && python -m pytest -q"


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


# ---- Every ```python block of the README runs as written on folders laid out as `hf-mmdl quickstart` writes them.

# A block whose first line is `# needs: <what>` cannot run here (no Hub download, no GPU in tests) and is skipped,
# naming what it needs; every other block must run.
NEEDS = re.compile(r"#\s*needs:\s*(.+)")


def readme_python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of README.md, in order."""
    text = (ROOT / "README.md").read_text()
    return [(text[: match.start()].count("\n") + 1, match.group(1))
            for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)]


def test_the_readme_has_python_blocks_and_each_is_run_below():
    blocks = readme_python_blocks()
    assert len(blocks) >= 6
    # Each block stands alone: it imports or defines every name it uses (a block that relied on an earlier one
    # would fail here, since each runs in a fresh namespace).
    assert all(code.strip() for _, code in blocks)


@pytest.fixture(scope="module")
def quickstart_folders(tmp_path_factory):
    """A working directory holding tiny untrained models where `hf-mmdl quickstart` saves its trained ones:
    hf_mmdl_quickstart/{m2, vae, dvae, glide, glide/inpaint, data2vec_multimodal, multimodal_vae}, each with its
    processor."""
    from hf_mmdl import (DiscreteVAEConfig, DiscreteVAEImageProcessor, DiscreteVAEModel, GlideConfig, GlideTextConfig,
                         ImageVAEConfig,
                         ImageVAEImageProcessor, ImageVAEModel, M2ForConditionalGeneration, M2ImageProcessor,
                         M2Processor)
    from hf_mmdl.data.scenes import generate_scene
    from hf_mmdl.modeling import GlideModel, inpainting_model_from
    from hf_mmdl.modeling.configuration_m2 import m2_config_for
    from hf_mmdl.pipelines import GlideInpaintPipeline, GlidePipeline, glide_scheduler
    from hf_mmdl.processing import GlideProcessor, train_caption_tokenizer

    cwd = tmp_path_factory.mktemp("readme")
    out = cwd / "hf_mmdl_quickstart"
    torch.manual_seed(0)
    rng = random.Random(0)
    captions = [caption for _ in range(20) for caption in generate_scene(rng)["captions"]]
    tokenizer = train_caption_tokenizer(captions, min_count=1, model_max_length=20)

    M2ForConditionalGeneration(m2_config_for("tiny", len(tokenizer), 32, tokenizer)).save_pretrained(out / "m2")
    M2Processor(M2ImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(out / "m2")

    side = {"size": {"shortest_edge": 16}, "crop_size": {"height": 16, "width": 16}}
    ImageVAEModel(ImageVAEConfig(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, latent_dim=8, sample_size=16,
    )).save_pretrained(out / "vae")
    ImageVAEImageProcessor(**side).save_pretrained(out / "vae")
    DiscreteVAEModel(DiscreteVAEConfig(group_count=2, n_blk_per_group=1, n_hid=16, vocab_size=64, n_init=16)
                     ).save_pretrained(out / "dvae")
    DiscreteVAEImageProcessor(**side).save_pretrained(out / "dvae")

    glide = GlideModel(GlideConfig(
        # As small as GLIDE gets: the README samples 100 steps of 4 images with it.
        image_size=16, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
        num_head_channels=8, dropout=0.0,
        text_config=GlideTextConfig(vocab_size=len(tokenizer), text_ctx=8, width=32, num_layers=1, num_attention_heads=2,
                                    pad_token_id=tokenizer.pad_token_id),
    )).eval()
    processor = GlideProcessor.for_config(glide.config, tokenizer)
    GlidePipeline(glide=glide, processor=processor, scheduler=glide_scheduler(glide)).save_pretrained(out / "glide")
    inpaint = inpainting_model_from(glide).eval()
    GlideInpaintPipeline(glide=inpaint, processor=processor, scheduler=glide_scheduler(inpaint)
                         ).save_pretrained(out / "glide" / "inpaint")

    from hf_mmdl import Data2VecMultimodalForPreTraining, Data2VecMultimodalProcessor
    from hf_mmdl.modeling.configuration_data2vec_multimodal import data2vec_multimodal_config_for
    spoken = Data2VecMultimodalProcessor.for_texts(captions, image_size=32, vocab_size=300)
    bpe = spoken.tokenizer
    Data2VecMultimodalForPreTraining(data2vec_multimodal_config_for(
        "tiny", vocab_size=len(bpe), mask_token_id=bpe.mask_token_id, pad_token_id=bpe.pad_token_id,
        bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id, image_size=32, patch_size=8,
    )).save_pretrained(out / "data2vec_multimodal")
    spoken.save_pretrained(out / "data2vec_multimodal")

    from hf_mmdl import MultimodalVAEModel, MultimodalVAEProcessor
    from hf_mmdl.data.attribute_scenes import COMBINATIONS
    from hf_mmdl.data.text_to_image import scene_caption
    from hf_mmdl.modeling.configuration_multimodal_vae import multimodal_vae_config_for
    scenes = MultimodalVAEProcessor.for_captions([scene_caption(s, c, p) for c, s, p in COMBINATIONS], image_size=16)
    MultimodalVAEModel(multimodal_vae_config_for("tiny", **scenes.config_kwargs())).save_pretrained(out / "multimodal_vae")
    scenes.save_pretrained(out / "multimodal_vae")
    return cwd


@pytest.mark.parametrize("line, code", readme_python_blocks(), ids=[f"line {line}" for line, _ in readme_python_blocks()])
def test_readme_python_block_runs_as_written(line, code, quickstart_folders, monkeypatch):
    needs = NEEDS.match(code.lstrip().splitlines()[0])
    if needs:
        pytest.skip(f"README block at line {line} needs {needs.group(1).strip()}")
    monkeypatch.chdir(quickstart_folders)
    exec(compile(code, f"README.md block at line {line}", "exec"), {"__name__": "__readme__"})
