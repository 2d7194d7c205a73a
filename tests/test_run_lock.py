"""Two real `cli.py` processes into one run folder (a SLURM array given one --out, a command launched twice): the
second is refused up front, naming the holder, and the first run's files are its own (train/run_lock.py)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from train.run_lock import LOCK
from train.synth import make_cache

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--dataset", "synth", "--width", "4", "--window", "4", "--batch-size", "4", "--folds", "2", "--milestones",
         "20", "--num-workers", "0", "--streams", "temporal", "--threads", "1", "--no-plots"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("lockcache") / "c"
    make_cache(path, "synth", videos=6, frames=200, test_videos=1)   # about a second an epoch
    return path


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _until(cond, p: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert p.poll() is None and time.monotonic() < deadline, f"the first run ended before {what}"
        time.sleep(0.2)


def _finish(p: subprocess.Popen) -> tuple[int, str]:
    _, err = p.communicate(timeout=600)
    return p.returncode, err


def test_a_second_train_into_a_running_runs_folder_is_refused_and_the_first_keeps_its_files(cache, tmp_path):
    """Before: both exited 0 naming the folder, which held the second's run (lr 0.01) under the first's printed
    scores; the first's finished run was gone without a word."""
    out = tmp_path / "run"
    first = _start("train", "--cache", cache, *SMALL, "--epochs", "25", "--lr", "0.05", "--out", out)
    _until(lambda: (out / "log.csv").is_file(), first, "its first epoch")
    second = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--cache", cache, *SMALL, "--epochs",
                             "25", "--lr", "0.01", "--out", out], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 2, second.stderr[-2000:]
    assert first.poll() is None, "the first run ended before the second was refused: the test proves nothing"
    assert f"a `train` run (host {os.uname().nodename}, pid {first.pid}" in second.stderr
    assert "is writing in this folder" in second.stderr and "give this run another --out" in second.stderr
    rc, err = _finish(first)
    assert rc == 0, err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["lr"] == 0.05 and metrics["epochs_run"] == len((out / "log.csv").read_text().split()) - 1
    for name in ("best.pt", "last.pt"):
        assert torch.load(out / name, weights_only=True)["config"]["lr"] == 0.05
    assert (out / LOCK).is_file()   # stays (train/predict_lock.py says why); the next run takes it
    rc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--cache", cache, *SMALL, "--epochs", "1",
                         "--lr", "0.01", "--out", out], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                        capture_output=True, text=True, timeout=600).returncode
    assert rc == 0   # released when the first ended


def test_an_ablate_trains_its_own_cells_and_a_train_into_one_of_them_meanwhile_is_refused(cache, tmp_path):
    """Before: the train replaced a finished cell (other --patience) while the ablate ran; the ablate's table kept
    the replaced run's row under its own settings. The ablate's own hold must not refuse its cells."""
    out = tmp_path / "abl"
    cell = out / "lr=0.05" / "fold0"
    ablate = _start("ablate", "--cache", cache, *SMALL, "--epochs", "8", "--fold-ids", "0",
                    "--grid", "lr=0.05,0.01,0.02", "--out", out)
    _until(lambda: (cell / "metrics.json").is_file(), ablate, "its first cell finished")
    into_cell = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--cache", cache, *SMALL, "--epochs",
                                "8", "--lr", "0.05", "--patience", "3", "--out", cell], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert into_cell.returncode == 2, into_cell.stderr[-2000:]
    assert ablate.poll() is None, "the ablate ended before the train was refused: the test proves nothing"
    assert f"an `ablate` run (host {os.uname().nodename}, pid {ablate.pid}" in into_cell.stderr
    assert f"is writing in {out}, a folder above it" in into_cell.stderr
    rc, err = _finish(ablate)
    assert rc == 0, err[-2000:]
    assert json.loads((cell / "metrics.json").read_text())["config"]["patience"] == 5   # the ablate's run, as tabled
    assert (out / "ablation.md").is_file()
