"""Checkpoints hold tensors and plain types only; one that would run code when loaded is refused without running it,
and checkpoints written by earlier versions still load for prediction (or are refused with what to do)."""
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from features.errors import BadInputError
from train import checkpoint, data
from train.evaluate import predict
from train.predict import load_checkpoint
from train.synth import make_cache
from train.trainer import TrainConfig, train

OLD = Path(__file__).parent / "fixtures" / "main-6376d8d"
TINY = {"dataset": "synth", "width": 2, "window": 4, "length": 16, "stride": 8, "batch_size": 4, "folds": 2,
        "lr": 0.1, "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False, "epochs": 2}


class RunsCode:
    """Unpickling this writes a marker file: what a booby-trapped checkpoint could do (and worse)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck")
    make_cache(root / "cache", "synth", videos=5, frames=40, test_videos=1)
    cfg = TrainConfig(cache=str(root / "cache"), out=str(root / "run"), streams="spatial", **TINY)
    train(cfg)
    return cfg


def _trap(src: Path, dst: Path, marker: Path) -> Path:
    ck = torch.load(src, weights_only=True)
    ck["config"]["note"] = RunsCode(marker)
    torch.save(ck, dst)
    return dst


def test_checkpoints_are_tensors_and_plain_types(run):
    for name in ("best.pt", "last.pt"):
        ck = torch.load(Path(run.out) / name, weights_only=True)
        assert isinstance(ck["config"], dict) and ck["config"]["milestones"] == [100]
    assert isinstance(ck["rng"]["torch"], torch.Tensor) and type(ck["sched"]["milestones"]) is dict
    with pytest.raises(TypeError, match="PosixPath"):
        checkpoint.save({"config": {"cache": Path("x")}}, Path(run.out) / "never.pt")


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(run, tmp_path):
    marker = tmp_path / "marker"
    evil = _trap(Path(run.out) / "best.pt", tmp_path / "evil.pt", marker)
    with pytest.raises(BadInputError, match=r"not a mimamo checkpoint.*\(exec\).*can run code"):
        load_checkpoint(evil)
    r = CliRunner().invoke(main, ["predict", str(tmp_path / "any.mp4"), "--checkpoint", str(evil), "--out",
                                  str(tmp_path / "p")])
    assert r.exit_code == 2 and "not a mimamo checkpoint" in r.output, r.output
    with pytest.raises(BadInputError, match="not a mimamo checkpoint"):     # --init-spatial
        train(replace(run, streams="both", out=str(tmp_path / "both"), init_spatial=str(evil),
                      init_temporal=str(evil)))
    cut = replace(run, out=str(tmp_path / "cut"), stop_after=1)
    assert train(cut).get("interrupted")
    _trap(tmp_path / "cut" / "last.pt", tmp_path / "cut" / "last.pt", marker)
    with pytest.raises(BadInputError, match="not a mimamo checkpoint"):     # --resume
        train(replace(cut, stop_after=None, resume=True))
    assert not marker.exists()
    torch.load(evil, weights_only=False)       # the trap is real: loading it the unsafe way runs its code
    assert marker.read_text() == "code ran"


def test_checkpoints_of_an_earlier_version_load_or_say_what_to_do(run, tmp_path):
    model, cfg, ck = load_checkpoint(OLD / "best.pt")
    assert cfg.streams == "temporal" and cfg.input == "dphase" and ck["fingerprints"]["dphase_s0"] == "synth-d0"
    rows = data.video_table(run.cache, "synth")
    ds = data.SequenceDataset(run.cache, "synth", rows, window=cfg.window, input=cfg.input, streams=cfg.streams,
                              length=cfg.length, test=True)
    res = predict(model, ds, cfg.window, 4, 0, "cpu")
    assert all(np.isfinite(r["pred"][r["valid"]]).all() for r in res.values())
    out = tmp_path / "old"
    out.mkdir()
    shutil.copy(OLD / "last.pt", out / "last.pt")
    old = TrainConfig(**{**cfg.__dict__, "cache": run.cache, "out": str(out), "resume": True, "num_workers": 0})
    with pytest.raises(BadInputError, match="older mimamo.*drop --resume"):
        train(old)
    with pytest.raises(BadInputError, match="older mimamo.*train the temporal stream again"):
        train(replace(old, streams="both", resume=False, out=str(tmp_path / "b"), init_temporal=str(OLD / "best.pt"),
                      init_spatial=str(Path(run.out) / "best.pt")))
