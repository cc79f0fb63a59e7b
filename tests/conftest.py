import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hf_mmdl import M2Config, M2ForConditionalGeneration, M2ImageProcessor, M2Processor  # noqa: E402
from hf_mmdl.processing import train_caption_tokenizer  # noqa: E402
from hf_mmdl.training.captioning import (  # noqa: E402
    CaptioningDataArguments,
    CaptioningModelArguments,
    CaptioningTrainingArguments,
    m2_config_for,
    run_captioning,
)

CAPTIONS = [
    "a small red circle to the left of a large blue square",
    "a green star above a white cross",
    "three shapes a yellow triangle, a purple circle and a red star",
    "there is one blue circle",
]


@pytest.fixture(scope="session")
def tokenizer():
    return train_caption_tokenizer(CAPTIONS, min_count=1, model_max_length=20)


@pytest.fixture(scope="session")
def region_processor(tokenizer):
    """The paper's setting: precomputed 16-d 'detector' features, at most 10 regions."""
    return M2Processor(M2ImageProcessor(max_regions=10, region_feature_dim=16), tokenizer)


@pytest.fixture(scope="session")
def image_processor_m2(tokenizer):
    return M2Processor(M2ImageProcessor(size={"height": 32, "width": 32}, region_feature_dim=None), tokenizer)


def tiny_region_config(tokenizer, **overrides) -> M2Config:
    """The spec's tiny unit-test config: d 32, 4 heads, d_ff 64, 3+3 layers, 4 slots, 16-d regions."""
    kwargs = dict(
        vocab_size=len(tokenizer), d_model=32, num_attention_heads=4, d_ff=64, memory_slots=4,
        region_feature_dim=16, max_regions=10, max_position_embeddings=20, dropout=0.0,
    )
    return M2Config(**(kwargs | overrides))


@pytest.fixture
def region_model(tokenizer):
    torch.manual_seed(0)
    return M2ForConditionalGeneration(tiny_region_config(tokenizer)).eval()


@pytest.fixture
def grid_model(tokenizer):
    torch.manual_seed(0)
    return M2ForConditionalGeneration(m2_config_for("tiny", len(tokenizer), 32, tokenizer)).eval()


@pytest.fixture
def regions():
    """Two images with 10 and 6 regions (the second zero-padded to 10), as the processor returns them."""
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, 10, 16, generator=generator)
    features[1, 6:] = 0
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    return {"region_features": features, "region_attention_mask": mask}


@pytest.fixture
def rgb_image():
    return PIL.Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8))


# Single-object scenes at 32 px: small enough to learn on 2 CPU cores in under a minute.
LEARNING_DATA = CaptioningDataArguments(num_train_images=300, num_eval_images=40, max_objects=1)


@pytest.fixture(scope="session")
def trained_captioner(tmp_path_factory):
    """A small M² trained with cross-entropy on built-in scenes, saved by the training recipe: (folder, results)."""
    folder = tmp_path_factory.mktemp("m2-cross-entropy")
    results = run_captioning(
        CaptioningModelArguments(model_size="small", image_size=32),
        LEARNING_DATA,
        CaptioningTrainingArguments(
            output_dir=str(folder), max_steps=200, warmup_steps=50, logging_steps=10,
            # The paper's schedule peaks at (d·warmup)^-0.5 ≈ 9e-3 for so short a warm-up: too hot to be stable.
            paper_schedule=False, learning_rate=2e-3,
            eval_strategy="no", save_strategy="no", seed=0, disable_tqdm=True, num_beams=3,
        ),
    )
    return folder, results

