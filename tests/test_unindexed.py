"""A done group that its dataset's index has no row for (index.parquet restored from a backup, a row lost): no reader
may leave it out without a word. info names it, export leaves it out and exits 1, train refuses (or lists it with
--skip-unusable), predict reports it failed, and the `features` run they name writes its row back."""
import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from synth_video import write_face_video

import cli
from features.errors import BadInputError
from pipeline import extract, graph, store
from pipeline.manifest import get_dataset, list_videos
from train.predict import predict_cache
from train.synth import make_cache
from train.trainer import TrainConfig, train
from train.videos import select

TINY = {"dataset": "aw", "width": 4, "window": 4, "length": 32, "stride": 16, "batch_size": 4, "folds": 2,
        "lr": 0.1, "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False, "epochs": 1}
LOST = ["v01", "v05"]   # a train video and a test video whose rows the restored index lacks


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A cache (v04, v05 the test split) and a spatial model trained on it while every row was there."""
    root = tmp_path_factory.mktemp("unindexed")
    make_cache(root / "c", "aw", videos=6, frames=40, test_videos=2)
    train(TrainConfig(cache=str(root / "c"), out=str(root / "run"), streams="spatial", **TINY))
    return root / "c", root / "run" / "best.pt"


@pytest.fixture
def cache(made, tmp_path):
    """A copy of the cache whose index lost the rows of LOST (their groups are untouched)."""
    copy = tmp_path / "c"
    shutil.copytree(made[0], copy)
    rows = store.read_index(copy, "aw").to_dict("records")
    store.write_index(copy, "aw", [r for r in rows if r["video"] not in LOST])
    return copy


def test_info_names_the_groups_and_what_to_run(cache):
    out = CliRunner().invoke(cli.main, ["info", "--cache", str(cache)]).output
    assert "4 done" in out
    assert "2 done groups without a row in index.parquet (v01, v05): no reader uses them" in out
    assert f"run `python cli.py features --dataset aw --cache {cache} --stages align,motion,spatial` (the flags the cache recorded)" in out


def test_export_leaves_them_out_says_so_and_exits_1(cache, tmp_path):
    out = tmp_path / "x.h5"
    res = CliRunner().invoke(cli.main, ["export", "--cache", str(cache), "--dataset", "aw", "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "video 'v01' has a done group" in res.output and "2 videos left out" in res.output
    with h5py.File(out) as h5:
        assert list(h5) == ["v00", "v02", "v03", "v04"]
        assert sorted(json.loads(h5.attrs["left_out"])) == LOST


def test_train_refuses_them_or_lists_them_with_skip_unusable(cache):
    with pytest.raises(BadInputError, match=r"2 videos have a done group but no row in index.parquet \(v01, v05\).*"
                                            r"python cli.py features --dataset aw --cache .* --stages align.*--skip-unusable"):
        select(cache, "aw", ["resnet50"])
    with pytest.raises(BadInputError, match=r"1 video has a done group but no row in index.parquet \(v05\)"):
        select(cache, "aw", ["resnet50"], splits=("test",))   # only the splits the run reads
    sel = select(cache, "aw", ["resnet50"], skip_unusable=True)
    assert sorted(sel.left_out) == LOST and "no row in" in sel.left_out["v01"]
    assert not {r["video"] for r in sel.rows} & set(LOST)


def test_predict_reports_them_failed(made, cache, tmp_path):
    res = predict_cache(cache, "aw", made[1], tmp_path / "p", split="test", echo=lambda *a: None)
    assert [v for v, _ in res["failed"]] == ["v05"]   # v01 is in another split
    assert "no row in" in dict(res["failed"])["v05"] and "python cli.py features" in dict(res["failed"])["v05"]
    assert res["scores"]["videos"] == ["v04"]
    assert "v05" in json.loads((tmp_path / "p" / "predict.json").read_text())["failed"]


def test_the_features_run_named_writes_their_rows_back(tmp_path):
    """What the hint says is true: a rerun of `features` finds the groups done, skips them and writes their rows."""
    root, cache = tmp_path / "data", tmp_path / "cache"
    rng = np.random.default_rng(0)
    (root / "videos" / "train").mkdir(parents=True)
    for i, vid in enumerate(("a", "b")):
        write_face_video(root / "videos" / "train" / f"{vid}.mp4", 12, size=(160, 120), seed=i)
        for dim in ("arousal", "valence"):
            (root / "annotations" / "train" / dim).mkdir(parents=True, exist_ok=True)
            np.savetxt(root / "annotations" / "train" / dim / f"{vid}.txt", rng.uniform(-1, 1, 12), fmt="%.4f")

    def features() -> graph.Summary:   # what `features --dataset demo --stages align` runs
        return graph.run(list_videos(get_dataset("demo", root)), cache, "demo",
                         extract.Settings(stages=("align",), weights="random"), workers=1, progress=False,
                         echo=lambda *a: None, whole_dataset=True)

    assert [r["status"] for r in features().rows] == ["done", "done"]
    before = store.read_index(cache, "demo").set_index("video")
    store.write_index(cache, "demo", [r for r in store.read_index(cache, "demo").to_dict("records") if r["video"] != "b"])
    assert "1 done group without a row in index.parquet (b)" in CliRunner().invoke(
        cli.main, ["info", "--cache", str(cache)]).output
    assert {r["video"]: r["action"] for r in features().rows} == {"a": "skip", "b": "skip"}
    after = store.read_index(cache, "demo").set_index("video")
    assert list(after.index) == ["a", "b"] and after.loc["b", "fingerprints"] == before.loc["b", "fingerprints"]
    assert "without a row" not in CliRunner().invoke(cli.main, ["info", "--cache", str(cache)]).output
