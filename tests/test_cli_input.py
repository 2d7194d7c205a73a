"""The command line on bad input, run as a user runs it (a subprocess): the exit code, a one-line message naming the
file and what to do (never a traceback), and nothing already computed lost. Real videos (OpenCV), real dlib, a real
Zarr cache and a real LocalCluster, on one short video."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from synth_video import write_face_video

from pipeline import store

ROOT = Path(__file__).resolve().parent.parent
N = 40


def cli(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` in `cwd`, with this checkout on PYTHONPATH (also for the Dask workers)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)


def features(cache: Path, root: Path, *extra) -> subprocess.CompletedProcess:
    return cli("features", "--dataset", "demo", "--root", root, "--cache", cache, "--weights", "random",
               "--workers", "1", "--no-progress", *extra, cwd=root.parent)


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """An Aff-Wild layout with one labelled video, and its cache (align, motion, spatial)."""
    base = tmp_path_factory.mktemp("cli_input")
    root = base / "data"
    (root / "videos" / "train").mkdir(parents=True)
    write_face_video(root / "videos" / "train" / "one.avi", N, size=(240, 180), motion="translate", fourcc="MJPG")
    for dim in ("arousal", "valence"):
        (root / "annotations" / "train" / dim).mkdir(parents=True)
        np.savetxt(root / "annotations" / "train" / dim / "one.txt", np.linspace(-1, 1, N), fmt="%.4f")
    cache = base / "cache"
    r = features(cache, root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, cache


def _copy(made, tmp_path: Path) -> tuple[Path, Path]:
    root, cache = made
    shutil.copytree(root, tmp_path / "data", copy_function=shutil.copy2)   # same mtimes: the videos are done
    shutil.copytree(cache, tmp_path / "cache")
    return tmp_path / "data", tmp_path / "cache"


def test_rerun_repairs_one_lost_part_of_a_motion_array(made, tmp_path):
    """The repair command train names for a lost dphase_s0 works: only that part is redone (it failed with
    KeyError 'dphase_s1': the computer's other part was appended to a writer that did not hold it)."""
    root, cache = _copy(made, tmp_path)
    before = store.open_video(cache, "demo", "one")["dphase_s0"][:]
    shutil.rmtree(store.video_dir(cache, "demo", "one") / "dphase_s0")
    r = cli("train", "--cache", cache, "--dataset", "demo", "--out", tmp_path / "run", cwd=tmp_path)
    assert r.returncode == 2 and "dphase_s0 is missing" in r.stderr
    fix = re.search(r"`python cli.py features --dataset demo --cache \S+ (--stages [^`]*)`", r.stderr)
    assert fix, r.stderr
    r = features(cache, root, *shlex.split(fix.group(1)))   # the command the message gives
    no_traceback(r)
    assert r.returncode == 0, r.stdout + r.stderr
    assert store.check_arrays(cache, "demo", "one", ["dphase_s0", "dphase_s1", "resnet50"])
    np.testing.assert_array_equal(store.open_video(cache, "demo", "one")["dphase_s0"][:], before)


def test_damaged_index_is_named_and_the_command_it_gives_rebuilds_it(made, tmp_path):
    """A damaged index.parquet (a copy cut short) was a pyarrow traceback in train, info, export and features."""
    root, cache = _copy(made, tmp_path)
    index = store.dataset_dir(cache, "demo") / "index.parquet"
    index.write_bytes(index.read_bytes()[:100])
    r = cli("train", "--cache", cache, "--dataset", "demo", "--out", tmp_path / "run", cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 2 and f"{index}: the index cannot be read" in r.stderr
    r = cli("info", "--cache", cache, cwd=tmp_path)
    assert r.returncode == 0 and "the index cannot be read" in r.stdout, r.stderr[-3000:]
    fix = re.search(r"`python cli.py features --dataset demo --cache \S+ (--stages [^`]*)`", r.stdout)
    r = features(cache, root, *shlex.split(fix.group(1)))
    no_traceback(r)
    assert r.returncode == 0 and "done: 0 new" in r.stdout, r.stdout + r.stderr   # nothing extracted again
    idx = store.read_index(cache, "demo")
    assert list(idx.video) == ["one"] and list(idx.status) == ["done"]
    assert index.with_suffix(".parquet.unreadable").is_file()   # the damaged file is kept, not deleted


def test_a_lost_valence_file_fails_the_video_and_keeps_its_cached_labels(made, tmp_path):
    """One of a video's two Aff-Wild label files missing made it silently unlabelled: the rerun replaced its cached
    labels with NaN and exited 0."""
    root, cache = _copy(made, tmp_path)
    before = store.open_video(cache, "demo", "one")["labels"][:]
    lost = root / "annotations" / "train" / "valence" / "one.txt"
    lost.unlink()
    r = features(cache, root)
    no_traceback(r)
    assert r.returncode == 1 and f"{lost}: label file not found" in r.stdout, r.stdout + r.stderr
    assert "restore it" in r.stdout
    labels = store.open_video(cache, "demo", "one")["labels"][:]
    assert np.isfinite(labels).all()
    np.testing.assert_array_equal(labels, before)
    row = store.read_index(cache, "demo").set_index("video").loc["one"]
    assert "label file not found" in row.error


def test_a_done_video_whose_file_was_cut_since_is_kept_and_info_says_its_update_failed(made, tmp_path):
    """A done video whose file was cut after extraction fails its rebuild and keeps the arrays made from the whole
    file, which readers use; `info` said "1 done, 0 failed" and nothing of it (the failure only in the index row)."""
    root, cache = _copy(made, tmp_path)
    before = store.open_video(cache, "demo", "one")["face48"][:]
    video = root / "videos" / "train" / "one.avi"
    video.write_bytes(video.read_bytes()[:video.stat().st_size // 2])
    r = features(cache, root)
    no_traceback(r)
    assert r.returncode == 1 and f"{video}: the video decodes to" in r.stdout, r.stdout + r.stderr
    np.testing.assert_array_equal(store.open_video(cache, "demo", "one")["face48"][:], before)
    info = cli("info", "--cache", cache, cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert re.search(rf"^    kept one: its last `features` run reported an error \({re.escape(str(video))}: the video "
                     r"decodes to \d+ frames.*\); its arrays stay as they were made, and readers use those still "
                     r"usable$", info.stdout, re.M), info.stdout


def test_labels_follow_their_contents_not_their_path_or_mtime(made, tmp_path):
    """The labels' fingerprint held the label files' paths and mtimes: a dataset root moved elsewhere (a copy with
    the same mtimes) had its labels read again and every run's identity changed, while an edit that kept a file's
    size and mtime went unseen."""
    root, cache = _copy(made, tmp_path)   # another root, the same files and mtimes
    before = store.open_video(cache, "demo", "one").attrs["fingerprints"]["labels"]
    r = features(cache, root)
    assert r.returncode == 0 and "0 updated, 1 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    valence = root / "annotations" / "train" / "valence" / "one.txt"
    st = valence.stat()
    text = valence.read_text()
    edited = text.replace("-1.0000", "-0.9000", 1)   # the same size
    assert edited != text and len(edited) == len(text)
    valence.write_text(edited)
    os.utime(valence, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = features(cache, root)
    assert r.returncode == 0 and "1 updated" in r.stdout, r.stdout + r.stderr[-3000:]
    g = store.open_video(cache, "demo", "one")
    assert g.attrs["fingerprints"]["labels"] != before
    assert g["labels"][0, 1] == np.float32(-0.9)


@pytest.mark.parametrize("entry, key", [("    fps: thirty\n", "fps"), ("    splits: [Train_Set]\n", "splits"),
                                        ("    root_default: [data]\n", "root_default")])
def test_a_manifest_value_of_the_wrong_type_is_named(tmp_path, entry, key):
    """A wrong type in data_manifest.yaml: a usage error naming the manifest and the key (a list of splits was an
    AttributeError traceback; fps 'thirty' was accepted silently, and failed later only for organiser crops)."""
    (tmp_path / "data" / "annotations" / "VA_Set" / "Train_Set").mkdir(parents=True)
    manifest = tmp_path / "m.yaml"
    manifest.write_text("datasets:\n  mine:\n    layout: affwild2\n    root_env: MINE_ROOT\n    root_default: data\n"
                        + entry)
    r = cli("features", "--dataset", "mine", "--cache", tmp_path / "c", "--faces", "cropped_aligned", cwd=tmp_path,
            env={"MIMAMO_MANIFEST": str(manifest)})
    no_traceback(r)
    assert r.returncode == 2 and f"{manifest}: manifest entry 'mine': {key}: expected" in r.stderr, r.stderr


def test_a_missing_manifest_names_a_remedy_that_exists(tmp_path):
    """The hint said 'pass --manifest', a flag no command has."""
    r = cli("info", cwd=tmp_path, env={"MIMAMO_MANIFEST": str(tmp_path / "none.yaml")})
    assert r.returncode == 2 and "manifest not found" in r.stderr and "--manifest" not in r.stderr
    assert "MIMAMO_MANIFEST=" in r.stderr


@pytest.mark.parametrize("command, flag", [("train", "--milestones"), ("ablate", "--fold-ids"),
                                           ("robustness", "--fold-ids")])
def test_a_list_flag_that_is_not_integers_is_a_usage_error(tmp_path, command, flag):
    """`--milestones a,b` and `--fold-ids x` were ValueError tracebacks."""
    extra = ["--grid", "window=4"] if command == "ablate" else []
    r = cli(command, "--cache", tmp_path, "--dataset", "demo", "--out", tmp_path / "o", *extra, flag, "1,x",
            cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 2 and f"Invalid value for {flag}: '1,x'" in r.stderr, r.stderr


def test_every_option_of_every_command_says_what_it_does():
    """HELPERS.md: every command and flag has a --help that explains it (export and inspect had bare options)."""
    from cli import main

    bare = [f"{name} {p.opts[0]}" for name, cmd in main.commands.items() for p in cmd.params
            if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert not bare


def test_demo_data_test_videos_beyond_videos_names_the_flags_and_the_range(tmp_path):
    """`--test-videos 5 --videos 2` said 'test_videos must be in [0, 1]': a parameter name and a range (0) the
    flag refuses."""
    r = cli("demo-data", "--out", tmp_path / "demo", "--videos", "2", "--test-videos", "5", cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Invalid value for '--test-videos': 5 is not fewer than --videos 2" in r.stderr, r.stderr
    assert "between 1 and 1" in r.stderr and "test_videos" not in r.stderr
    assert not (tmp_path / "demo").exists()


def _labels(root: Path, split: str, video: str, n: int) -> None:
    for dim in ("arousal", "valence"):
        (root / "annotations" / split / dim).mkdir(parents=True, exist_ok=True)
        np.savetxt(root / "annotations" / split / dim / f"{video}.txt", np.linspace(-1, 1, n), fmt="%.4f")


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """One features run over a dataset with odd videos: `cut` (an AVI cut to a sixth, 60 label lines), `cutfree` (the
    same cut, unlabelled), `blank` (labelled, no face in any frame), and four plain labelled ones (a, b, c; test d)."""
    base = tmp_path_factory.mktemp("cli_odd")
    root = base / "data"
    for split in ("train", "test"):
        (root / "videos" / split).mkdir(parents=True)
    whole = base / "whole.avi"
    write_face_video(whole, 60, size=(240, 180), motion="translate", fourcc="MJPG")
    data = whole.read_bytes()
    for name in ("cut", "cutfree"):
        (root / "videos" / "train" / f"{name}.avi").write_bytes(data[:len(data) // 6])
    _labels(root, "train", "cut", 60)
    write_face_video(root / "videos" / "train" / "blank.avi", N, size=(240, 180), motion="translate", fourcc="MJPG",
                     no_face=(0, N))
    _labels(root, "train", "blank", N)
    for seed, (split, name) in enumerate([("train", "a"), ("train", "b"), ("train", "c"), ("test", "d")]):
        write_face_video(root / "videos" / split / f"{name}.avi", N, size=(240, 180), motion="translate",
                         fourcc="MJPG", seed=seed)
        _labels(root, split, name, N)
    cache = base / "cache"
    r = features(cache, root)
    no_traceback(r)
    return root, cache, r


def test_a_cut_video_with_labels_fails_naming_the_video_not_the_labels(odd):
    """A cut video failed blaming its label file ('60 label lines but the video decodes to 10 frames ... use
    --label-slack'); only a stderr warning said the video was cut."""
    root, cache, r = odd
    assert r.returncode == 1, r.stdout + r.stderr
    video = root / "videos" / "train" / "cut.avi"
    m = re.search(rf"{re.escape(str(video))}: the video decodes to (\d+) frames, fewer than the 60 its header "
                  r"declares: the file is cut or damaged", r.stdout)
    assert m and 0 < int(m.group(1)) < 60, r.stdout
    assert "(re-copy or re-encode it; use --label-slack only if the header is known to be wrong)" in r.stdout
    row = store.read_index(cache, "demo").set_index("video").loc["cut"]
    assert row.status == "failed" and f"{video}: the video decodes to {m.group(1)} frames" in row.error


def test_a_cut_video_without_labels_is_extracted_and_its_row_says_it_decoded_short(odd, tmp_path):
    """The same cut video unlabelled is kept (headers are often a little off), but never silently: its index row,
    the summary and `info` say it decoded N of the M frames its header declares."""
    root, cache, r = odd
    row = store.read_index(cache, "demo").set_index("video").loc["cutfree"]
    assert row.status == "done" and 0 < row.n_frames < 60
    note = f"decoded {row.n_frames} of the 60 frames its header declares"
    assert note in row.note and "re-copy or re-encode it" in row.note
    assert re.search(rf"^cutfree .*{note}", r.stdout, re.M), r.stdout
    info = cli("info", "--cache", cache, cwd=tmp_path)
    assert info.returncode == 0 and f"note cutfree: {note}" in info.stdout, info.stdout + info.stderr
    for plain in ("a", "b", "d"):   # a whole video carries no note
        assert store.read_index(cache, "demo").set_index("video").loc[plain].note is pd.NA


def test_a_video_without_any_face_is_done_and_named_in_the_summary(odd, tmp_path):
    """A video where no face is found in any frame was recorded done with 0 valid frames, silently."""
    root, cache, r = odd
    row = store.read_index(cache, "demo").set_index("video").loc["blank"]
    assert row.status == "done" and row.n_frames == N and row.n_valid == 0
    assert row.note.startswith(f"{store.NO_FACE}: check the video")
    assert f"{store.NO_FACE} of 1 video: blank (recorded done with no valid frame" in r.stdout, r.stdout
    info = cli("info", "--cache", cache, cwd=tmp_path)
    assert f"note blank: {store.NO_FACE}" in info.stdout


def test_train_leaves_a_video_without_any_face_out_with_the_reason(odd, tmp_path):
    """train took a video without any face in as any other, silently (where it was the validation fold alone, with
    3 videos and --folds 3, its CCC was NaN and best.pt was picked on NaN); now it is left out, said on stderr and in
    metrics.json, and every score is a number."""
    import json

    root, cache, _ = odd
    out = tmp_path / "run"
    r = cli("train", "--cache", cache, "--dataset", "demo", "--out", out, "--streams", "temporal", "--epochs", "1",
            "--folds", "3", "--width", "4", "--num-workers", "0", "--threads", "1", "--skip-unusable",   # the cut one
            cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"left out blank: {store.NO_FACE}" in r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["left_out"]["blank"].startswith(store.NO_FACE)
    assert all("blank" not in vs for vs in m["videos"].values())
    assert np.isfinite(m["ccc_mean"]) and m["best_val_ccc_mean"] is not None and np.isfinite(m["best_val_ccc_mean"])
