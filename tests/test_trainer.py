"""The trainer learns a small synthetic cache, resumes exactly after a kill, and guards its inputs."""
import functools
import json
import operator
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from features.errors import BadInputError
from pipeline import store
from train import checkpoint
from train.metrics import ccc
from train.synth import make_cache
from train.trainer import TrainConfig, check_fingerprints, prepare, split_videos, start, train

TINY = {"dataset": "synth", "width": 4, "window": 4, "length": 32, "stride": 16, "batch_size": 4, "folds": 2, "lr": 0.1,
            "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    make_cache(path, "synth", videos=6, frames=100, test_videos=2)
    return path


def test_two_stream_learns_both_dimensions(cache, tmp_path):
    m = train(TrainConfig(cache=str(cache), out=str(tmp_path), streams="both", pretrain=False, epochs=6,
                          **{**TINY, "plots": True}))
    assert m["split"] == "test" and m["ccc_arousal"] > 0.3 and m["ccc_valence"] > 0.3, m
    for f in ("best.pt", "last.pt", "metrics.json", "log.csv", "log.jsonl", "predictions.parquet",
              "predictions.csv", "curves.png", "predictions.png"):
        assert (tmp_path / f).is_file(), f
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["per_video"]) == {"v04", "v05"} and saved["fingerprints"]["dphase_s0"] == "synth-d0"
    pred = pd.read_parquet(tmp_path / "predictions.parquet")
    n = store.done_videos(cache, "synth").set_index("video").n_frames
    assert len(pred) == n["v04"] + n["v05"] and not pred.duplicated(["video", "frame"]).any()
    assert pred.arousal.notna().all()
    ck = torch.load(tmp_path / "best.pt", weights_only=True)     # tensors and plain types only
    fps = {k: v for k, v in ck["fingerprints"].items() if k != "labels"}
    assert fps == {"resnet50": "synth-r", "dphase_s0": "synth-d0", "dphase_s1": "synth-d1", "valid": "synth-v"}
    assert saved["config"]["lr"] == TINY["lr"] and saved["config"]["num_workers"] == 0     # the whole config
    assert saved["identity"]["fingerprints"] == ck["fingerprints"] and saved["arch"] == "paper"
    torch.load(tmp_path / "last.pt", weights_only=True)
    assert len(pd.read_csv(tmp_path / "log.csv")) == 6


def test_kill_and_resume_gives_identical_results(cache, tmp_path):
    base = TrainConfig(cache=str(cache), out=str(tmp_path / "full"), streams="both", pretrain=False, epochs=2,
                       **{**TINY, "num_workers": 2})
    full = train(base)
    cut = replace(base, out=str(tmp_path / "cut"), stop_after=1)
    assert train(cut).get("interrupted")
    assert len(pd.read_csv(tmp_path / "cut" / "log.csv")) == 1
    resumed = train(replace(cut, stop_after=None, resume=True))
    for k in ("ccc_arousal", "ccc_valence", "pcc_arousal", "rmse_valence", "best_epoch"):
        assert resumed[k] == full[k], k
    a = pd.read_csv(tmp_path / "full" / "log.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "cut" / "log.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(BadInputError, match="config.window: 4 -> 8"):
        train(replace(cut, window=8, resume=True))


def test_single_streams_then_two_stream_from_them(tmp_path):
    """Fold 0 then fold 1 into one folder: fold 1's two-stream model starts from single streams trained on fold 1's
    own training videos (never on its held-out ones), and its weights at initialisation are theirs."""
    make_cache(tmp_path / "c", "synth", videos=6, frames=60, test_videos=0)
    cfg = TrainConfig(cache=str(tmp_path / "c"), out=str(tmp_path / "r"), streams="both", epochs=1,
                      **{**TINY, "folds": 3})
    first = train(cfg)
    m = train(replace(cfg, fold=1))
    assert m["videos"]["test"] != first["videos"]["test"]
    held = set(m["videos"]["val"]) | set(m["videos"]["test"])
    for part in ("spatial", "temporal"):
        sub = json.loads((tmp_path / "r" / part / "metrics.json").read_text())
        assert sub["videos"] == m["videos"] and not held & set(sub["videos"]["train"]), part   # retrained on fold 1
        assert m["init"][part] == str((tmp_path / "r" / part / "best.pt").resolve())
    sp = torch.load(tmp_path / "r" / "spatial" / "best.pt", weights_only=True)
    assert not any(k.startswith(("gru.", "temporal.")) for k in sp["model"])   # paper: no GRU in single streams
    # the two-stream model as training starts it (the same steps as train(): prepare, then start)
    probe = start(prepare(replace(cfg, fold=1, out=str(tmp_path / "probe"), init_spatial=m["init"]["spatial"],
                                  init_temporal=m["init"]["temporal"])))
    for part in ("spatial", "temporal"):
        want = checkpoint.load(m["init"][part])["model"]
        got = getattr(probe.model, part).state_dict()
        assert got and all(torch.equal(v, want[f"{part}.{k}"]) for k, v in got.items()), part


def test_split_rule_by_video():
    rows = [{"video": f"v{i}", "split": "train"} for i in range(9)]
    s = split_videos(rows, 3, 1, 0)
    names = [sorted(r["video"] for r in s[k]) for k in ("train", "val", "test")]
    assert sum(map(len, names)) == 9 and len(set(functools.reduce(operator.iadd, names, []))) == 9 and len(names[2]) == 3
    assert split_videos(rows, 3, 1, 0) == s and split_videos(rows, 3, 1, 1) != s
    held = {r["video"] for f in range(3) for r in split_videos(rows, 3, f, 0)["test"]}
    assert held == {r["video"] for r in rows}        # every video is held out in exactly one fold
    rows += [{"video": "t1", "split": "test"}]
    s = split_videos(rows, 3, 0, 0)
    assert [r["video"] for r in s["test"]] == ["t1"] and len(s["val"]) == 3 and len(s["train"]) == 6
    with pytest.raises(BadInputError, match="--fold"):
        split_videos(rows, 3, 3, 0)


def test_fingerprint_check_names_the_difference():
    check_fingerprints({"resnet50": "a", "dphase_s0": "b"}, {"resnet50": "a", "dphase_s0": "b", "flow": "c"})
    with pytest.raises(BadInputError, match="dphase_s0: trained on b, cache has x"):
        check_fingerprints({"resnet50": "a", "dphase_s0": "b"}, {"resnet50": "a", "dphase_s0": "x"})
    with pytest.raises(BadInputError, match="phase_s0: trained on p, cache has nothing"):
        check_fingerprints({"phase_s0": "p"}, {"resnet50": "a"})


def test_video_level_labels_use_the_video_head(tmp_path):
    make_cache(tmp_path, "omg", videos=10, frames=40, test_videos=0)
    rows = []
    for v in store.done_videos(tmp_path, "omg").video:
        g = store.open_video(tmp_path, "omg", v, mode="r+")
        lab = g["labels"][:]
        g.attrs["video_labels"] = {"arousal": float(np.nanmean(lab[:, 0])), "valence": float(np.nanmean(lab[:, 1]))}
        g["labels"][:] = np.nan
        rows.append(store.index_row(tmp_path, "omg", v))
    store.write_index(tmp_path, "omg", rows)
    m = train(TrainConfig(cache=str(tmp_path), out=str(tmp_path / "run"), streams="spatial", epochs=1,
                          **{**TINY, "dataset": "omg", "folds": 3}))
    assert m["level"] == "video" and len(m["per_video"]) >= 3      # a CCC over one video would mean nothing
    for v, pv in m["per_video"].items():
        assert np.isfinite(pv["arousal"]) and pv["label_arousal"] == pytest.approx(rows[int(v[1:])]["video_arousal"])
    pred = [pv["arousal"] for pv in m["per_video"].values()]
    lab = [pv["label_arousal"] for pv in m["per_video"].values()]
    assert np.isfinite(m["ccc_arousal"]) and m["ccc_arousal"] == pytest.approx(ccc(np.array(pred), np.array(lab)))


def test_ablation_grid_runs_cells_and_resumes(tmp_path):
    from train.ablate import ablate, parse_grid
    assert parse_grid(["window=4,8", "streams=spatial,both"]) == [("window", [4, 8]), ("streams", ["spatial", "both"])]
    with pytest.raises(BadInputError, match="grid"):
        parse_grid(["nonsense=1"])
    make_cache(tmp_path, "synth", videos=5, frames=40, test_videos=1, extras=True)
    base = TrainConfig(streams="temporal", epochs=1, **TINY)
    table = ablate(tmp_path, "synth", ["input=dphase,flow"], tmp_path / "abl", base, folds=2, fold_ids=[0])
    assert list(table.input) == ["dphase", "flow"] and (table.folds == 1).all()
    assert np.isfinite(table.ccc_mean).all()
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| input | arch | CCC arousal" in md and "| flow | paper |" in md
    done = tmp_path / "abl" / "input=flow" / "fold0" / "metrics.json"
    stamp = done.stat().st_mtime_ns
    again = ablate(tmp_path, "synth", ["input=dphase,flow"], tmp_path / "abl", base, folds=2, fold_ids=[0])
    assert done.stat().st_mtime_ns == stamp                     # finished cells are not rerun
    pd.testing.assert_frame_equal(table, again)
    flow = json.loads(done.read_text())
    assert set(flow["fingerprints"]) == {"flow", "valid", "labels"} and flow["input"] == "flow"


def test_cli_train_and_resume(cache, tmp_path):
    from click.testing import CliRunner

    from cli import main
    args = ["train", "--cache", str(cache), "--dataset", "synth", "--streams", "spatial", "--epochs", "1",
            "--lr", "0.1", "--folds", "2", "--num-workers", "0", "--threads", "1", "--no-plots",
            "--out", str(tmp_path / "r")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "ccc_arousal=" in r.output and (tmp_path / "r" / "metrics.json").is_file()
    r = CliRunner().invoke(main, args[:-2] + ["--out", str(tmp_path / "r2"), "--window", "3"])
    assert r.exit_code == 2 and "--window" in r.output
