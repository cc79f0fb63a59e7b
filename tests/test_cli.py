import subprocess
import sys

from transformers import AutoModelForImageTextToText, AutoProcessor

from hf_mmdl.architectures import ARCHITECTURES
from hf_mmdl.cli import main


def test_quickstart_trains_evaluates_and_saves_a_loadable_captioner(tmp_path):
    main(["quickstart", "--output-dir", str(tmp_path), "--max-steps", "4", "--num-train-images", "40"])
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert "CIDEr-D" in summary and "best constant caption" in summary and "nearest neighbour" in summary
    assert (tmp_path / "m2" / "test_captions.png").exists()
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "m2")
    processor = AutoProcessor.from_pretrained(tmp_path / "m2")
    assert model.config.model_type == "m2_transformer"
    assert processor.image_processor.size["height"] == ARCHITECTURES["m2"].quickstart.settings["image_size"] == 32


def test_hf_mmdl_command_lists_its_subcommands():
    out = subprocess.run([sys.executable, "-m", "hf_mmdl.cli", "--help"], capture_output=True, text=True, check=True)
    assert "quickstart" in out.stdout


def test_captioning_command_takes_the_training_script_flags():
    out = subprocess.run([sys.executable, "-m", "hf_mmdl.cli", "captioning", "--help"], capture_output=True, text=True, check=True)
    assert "--scst" in out.stdout and "--model_name_or_path" in out.stdout and "--learning_rate" in out.stdout


def test_quickstart_help_says_what_it_does_and_how_long_each_architecture_takes():
    from hf_mmdl.architectures import ARCHITECTURES

    out = subprocess.run([sys.executable, "-m", "hf_mmdl.cli", "quickstart", "--help"], capture_output=True, text=True,
                         check=True).stdout
    text = " ".join(out.split())
    plans = {name: a.quickstart for name, a in ARCHITECTURES.items() if a.quickstart}
    assert "beats a baseline" in text and f"about {sum(p.minutes for p in plans.values())} minutes on 2 CPU cores" in text
    for name, plan in plans.items():
        assert f"{name} {plan.minutes}" in text
