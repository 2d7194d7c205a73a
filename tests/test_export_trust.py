"""export and info on caches a researcher could be misled by: an array made two ways across videos, a group the
index lists but that is gone, an output path that holds something else; and the file saying what made it."""
import json
import shutil

import h5py
import pytest
from click.testing import CliRunner

import cli
from features.errors import BadInputError
from pipeline import store
from pipeline.export import export_h5
from train.synth import make_cache


@pytest.fixture
def cache(tmp_path):
    make_cache(tmp_path / "c", "aw", videos=4, frames=40, test_videos=1)
    return tmp_path / "c"


def _remake(cache, video, name="dphase_s0", fp="made-another-way"):
    """What a `features --replace-variant` killed after this video leaves: its array under other settings."""
    g = store.open_video(cache, "aw", video, mode="r+")
    store.set_fingerprints(g, {name: fp})


def test_an_array_made_two_ways_across_videos_is_refused_by_export_and_shown_by_info(cache, tmp_path):
    _remake(cache, "v01")
    with pytest.raises(BadInputError, match=r"array 'dphase_s0' was made with different settings across videos "
                                            r"\(synth-d0 in v00, v02, v03; made-another-way in v01\)"):
        export_h5(cache, "aw", tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists() and not list(tmp_path.glob(".x.h5*"))
    out = CliRunner().invoke(cli.main, ["info", "--cache", str(cache)]).output
    assert "MIXED: made 2 ways across the videos" in out
    assert "synth-d0: 3 videos (v00, v02, v03)" in out and "made-another-way: 1 video (v01)" in out
    _remake(cache, "v01", fp="synth-d0")   # made alike again: exported, and info has nothing to say
    assert export_h5(cache, "aw", tmp_path / "x.h5").written == ["v00", "v01", "v02", "v03"]
    assert "MIXED" not in CliRunner().invoke(cli.main, ["info", "--cache", str(cache)]).output


def test_the_file_says_what_made_it_and_what_it_lacks(cache, tmp_path):
    rows = store.read_index(cache, "aw").to_dict("records")
    store.write_index(cache, "aw", rows + [{"video": "bad", "status": "failed", "error": "bad.mp4: empty file",
                                            "split": "train"}])
    shutil.move(store.video_dir(cache, "aw", "v02"), tmp_path / "away")   # listed as done, its group gone
    res = CliRunner().invoke(cli.main, ["export", "--cache", str(cache), "--dataset", "aw",
                                        "--out", str(tmp_path / "x.h5")])
    assert res.exit_code == 1, res.output   # a smaller dataset than the index says stops a script
    assert "v02: the index lists it as done but its group is missing" in res.output
    with h5py.File(tmp_path / "x.h5") as h5:
        assert sorted(h5) == ["v00", "v01", "v03"]
        assert h5.attrs["cache"] == str(cache.resolve()) and h5.attrs["videos"] == 3
        made = json.loads(h5.attrs["arrays"])
        assert made["dphase_s0"]["fingerprint"] == "synth-d0" and made["dphase_s0"]["videos"] == 3
        assert made["resnet50"]["fingerprint"] == "synth-r"
        assert json.loads(h5.attrs["not_extracted"]) == {"bad": "bad.mp4: empty file"}
        assert "v02" in json.loads(h5.attrs["left_out"])
        assert "video_labels" in h5.attrs["labels"]


def test_an_array_some_videos_lack_is_said(cache, tmp_path):
    g = store.open_video(cache, "aw", "v01", mode="r+")
    del g["dphase_s1"]
    fps = dict(g.attrs["fingerprints"])
    fps.pop("dphase_s1")
    g.attrs["fingerprints"] = fps
    res = CliRunner().invoke(cli.main, ["export", "--cache", str(cache), "--dataset", "aw",
                                        "--out", str(tmp_path / "x.h5")])
    assert res.exit_code == 0, res.output
    assert "note: dphase_s1 is in 3 of the 4 videos" in res.output


def test_export_replaces_only_an_earlier_export(cache, tmp_path):
    precious = tmp_path / "best.pt"
    precious.write_bytes(b"a trained model")
    with pytest.raises(BadInputError, match="exists and is not an earlier export"):
        export_h5(cache, "aw", precious)
    assert precious.read_bytes() == b"a trained model"
    with pytest.raises(BadInputError, match="inside the cache's dataset folders"):
        export_h5(cache, "aw", store.dataset_dir(cache, "aw") / "index.parquet")
    assert store.read_index(cache, "aw") is not None
    export_h5(cache, "aw", tmp_path / "x.h5")
    assert export_h5(cache, "aw", tmp_path / "x.h5").written      # its own earlier file: replaced
    assert export_h5(cache, "aw", precious, force=True).written
    with h5py.File(precious) as h5:
        assert h5.attrs["dataset"] == "aw"


def test_info_skips_hidden_folders_says_where_a_dataset_folder_was_given_and_names_a_killed_runs_lock(cache):
    import os
    import socket
    import time

    import psutil

    from pipeline import lock

    (cache / ".ipynb_checkpoints").mkdir()
    out = CliRunner().invoke(cli.main, ["info", "--cache", str(cache)]).output
    assert "aw         4 done" in out and "refused" not in out
    out = CliRunner().invoke(cli.main, ["info", "--cache", str(cache / "aw")]).output
    assert f"this is a dataset's folder inside a cache: give its parent, `info --cache {cache}`" in out
    holder = {"host": socket.gethostname(), "pid": 2 ** 22 + 7, "pid_started": 1.0, "token": "t",
              "started": "2026-11-24 09:00", "command": "cli.py features --dataset aw --replace-variant",
              "heartbeat": time.time()}
    lock.lock_path(cache, "aw").write_text(json.dumps(holder))
    out = CliRunner().invoke(cli.main, ["info", "--cache", str(cache)]).output
    assert "lock left by a `features` run that was killed" in out and "--replace-variant" in out
    holder.update(pid=os.getpid(), pid_started=psutil.Process().create_time())   # this process: alive
    lock.lock_path(cache, "aw").write_text(json.dumps(holder))
    assert "a `features` run is at work on it now" in CliRunner().invoke(cli.main, ["info", "--cache", str(cache)]).output
