"""Kill a training run the way a crash or a pre-empted machine does, right after it wrote a given file."""

import json
import signal
import subprocess
import time
from pathlib import Path


def written_whole(marker: Path) -> bool:
    """The marker exists and, for a JSON file, parses: Trainer opens trainer_state.json before writing it, so a kill
    that follows the file's mere appearance can leave the checkpoint with an empty or cut state."""
    if not marker.exists():
        return False
    if marker.suffix != ".json":
        return True
    try:
        json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def kill_once_written(command: list[str], marker: Path, timeout: float = 300) -> None:
    """Start `command`, wait until `marker` (a file of a checkpoint) is written whole, then SIGKILL the process. Fails
    if the run ends before writing it, or if it takes longer than `timeout` seconds."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not written_whole(marker):
        assert process.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline, f"no {marker} after {timeout} s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
