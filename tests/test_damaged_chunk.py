"""A chunk file of a cached array cut short (a disk that filled up, an interrupted copy): train, export and inspect
say so in one line naming the video, the array, the chunk's file and the `features` command that rebuilds it; that
command really does, and a training run that died on it resumes from its last checkpoint. Real videos (OpenCV), real
dlib, a real Zarr cache, the real CLI in a subprocess (DataLoader workers included)."""
from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from synth_video import write_face_video
from test_cli_input import cli, features, no_traceback

from pipeline import store

N = 40
VIDEOS = {"a": "train", "b": "train", "c": "test"}
TRAIN = ("--streams", "spatial", "--epochs", "2", "--folds", "2", "--num-workers", "2", "--threads", "1",
         "--no-plots")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Three labelled videos (two train, one test) and their cache (align, motion, spatial)."""
    base = tmp_path_factory.mktemp("damaged")
    root = base / "data"
    for k, (video, split) in enumerate(VIDEOS.items()):
        (root / "videos" / split).mkdir(parents=True, exist_ok=True)
        write_face_video(root / "videos" / split / f"{video}.avi", N, size=(240, 180), motion="translate",
                         fourcc="MJPG", seed=k)
        for dim in ("arousal", "valence"):
            (root / "annotations" / split / dim).mkdir(parents=True, exist_ok=True)
            np.savetxt(root / "annotations" / split / dim / f"{video}.txt",
                       np.sin(np.linspace(0, 3 + k, N) + (dim == "valence")), fmt="%.4f")
    cache = base / "cache"
    r = features(cache, root)
    assert r.returncode == 0, r.stdout + r.stderr
    return root, cache


def _copy(made, tmp_path: Path) -> tuple[Path, Path]:
    """The videos as they are (label files are fingerprinted by path: a copy would be new labels) and a copy of
    the cache."""
    root, cache = made
    shutil.copytree(cache, tmp_path / "cache")
    return root, tmp_path / "cache"


def _cut_short(cache: Path, video: str, name: str) -> Path:
    arr = store.open_video(cache, "demo", video)[name]
    chunk = store.video_dir(cache, "demo", video) / name / arr.metadata.encode_chunk_key((0,) * arr.ndim)
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    return chunk


def _says_damaged(r, cache: Path, chunk: Path, video: str, name: str) -> re.Match:
    no_traceback(r)
    assert r.returncode == 2, r.stdout + r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and str(chunk) in line and f"video {video!r}: {name}" in line, r.stderr
    fix = re.search(r"`python cli.py features --dataset demo --cache (\S+) (--stages [^`]*)`", line)
    assert fix and fix.group(1) == str(cache), line
    return fix


def test_train_dies_in_one_line_the_command_repairs_and_resume_finishes_the_run(made, tmp_path):
    clean = cli("train", "--cache", made[1], "--dataset", "demo", *TRAIN, "--out", tmp_path / "clean", cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    root, cache = _copy(made, tmp_path)
    before = store.open_video(cache, "demo", "c")["resnet50"][:]
    chunk = _cut_short(cache, "c", "resnet50")   # a test video: both epochs train, the run dies scoring it
    run = tmp_path / "run"
    r = cli("train", "--cache", cache, "--dataset", "demo", *TRAIN, "--out", run, cwd=tmp_path)
    fix = _says_damaged(r, cache, chunk, "c", "resnet50")
    assert store.video_fingerprints(cache, "demo", "c")["resnet50"] == "damaged"   # for `features` to rebuild
    last = (run / "last.pt").read_bytes()
    assert not (run / "metrics.json").exists()

    r = features(cache, root, *shlex.split(fix.group(2)))   # the command the message gives
    no_traceback(r)
    assert r.returncode == 0, r.stdout + r.stderr
    assert store.check_arrays(cache, "demo", "c", ["resnet50"])
    np.testing.assert_array_equal(store.open_video(cache, "demo", "c")["resnet50"][:], before)

    assert (run / "last.pt").read_bytes() == last   # the failed run left its checkpoint as it was
    r = cli("train", "--cache", cache, "--dataset", "demo", *TRAIN, "--out", run, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run, tmp_path / "clean"))
    assert got["epochs_run"] == 2 and "epoch 1/2" not in r.stdout + r.stderr   # resumed, not trained again
    for k in ("ccc_arousal", "ccc_valence", "rmse_arousal", "rmse_valence"):
        assert got[k] == want[k], k


def test_export_leaves_the_damaged_video_out_and_inspect_names_it(made, tmp_path):
    root, cache = _copy(made, tmp_path)
    chunk = _cut_short(cache, "b", "face48")
    r = cli("export", "--cache", cache, "--dataset", "demo", "--out", tmp_path / "x.h5", cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 1 and "wrote 2 videos" in r.stdout, r.stdout + r.stderr
    assert "left out:" in r.stderr and str(chunk) in r.stderr and "marked damaged" in r.stderr, r.stderr
    export_fix = re.search(r"`python cli.py features --dataset demo --cache \S+ (--stages [^`]*)`", r.stderr)
    import h5py
    with h5py.File(tmp_path / "x.h5") as h5:
        assert sorted(h5) == ["a", "c"] and "b" in json.loads(h5.attrs["left_out"])
    chunk = _cut_short(cache, "c", "dphase_s0")
    r = cli("inspect", "--cache", cache, "--dataset", "demo", "--video", "c", "--out", tmp_path / "png", cwd=tmp_path)
    inspect_fix = _says_damaged(r, cache, chunk, "c", "dphase_s0")
    for fix in (export_fix, inspect_fix):   # the commands the messages give
        r = features(cache, root, *shlex.split(fix.group(fix.lastindex)))
        assert r.returncode == 0, r.stdout + r.stderr
    r = cli("export", "--cache", cache, "--dataset", "demo", "--out", tmp_path / "y.h5", cwd=tmp_path)
    assert r.returncode == 0 and "wrote 3 videos" in r.stdout, r.stdout + r.stderr


def test_a_chunk_cut_short_is_refused_before_blosc_decodes_it(tmp_path):
    """Blosc reads the length its header claims, past the end of a shorter file (a segfault was seen), so the
    length is checked first: the error is ChunkCutShort naming the chunk, never blosc's own."""
    from pipeline import chunks

    group = zarr.open_group(tmp_path / "g", mode="w")
    arr = store.create_array(group, "resnet50", 2 * store.CHUNK_T)
    arr[:] = np.random.default_rng(0).standard_normal(arr.shape).astype(arr.dtype)
    where = tmp_path / "g" / "resnet50"
    first = where / arr.metadata.encode_chunk_key((0, 0))
    assert np.array_equal(chunks.read_array(arr, where, 0, 10), arr[:10])   # whole files pass
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    with pytest.raises(chunks.ChunkCutShort, match=re.escape(str(first.relative_to(where)))):
        chunks.read_array(arr, where, 0, 10)
    assert chunks.read_array(arr, where, store.CHUNK_T, store.CHUNK_T + 10).shape == (10, 2048)   # chunk 1 is whole


# ---------------------------------------------------------------- a chunk file missing (deleted, lost in a copy)


def _chunk_file(arr, where: Path, c: int) -> Path:
    """Time chunk c's file, spelt out here (not store.chunk_path) so that these tests run on older code too."""
    return where / arr.metadata.encode_chunk_key((c, *[0] * (arr.ndim - 1)))


def _delete_chunk(cache: Path, video: str, name: str, c: int = 0) -> Path:
    arr = store.open_video(cache, "demo", video)[name]
    chunk = _chunk_file(arr, store.video_dir(cache, "demo", video) / name, c)
    chunk.unlink()
    return chunk


def test_a_lost_chunk_file_stops_train_before_it_starts_and_the_command_repairs_it(made, tmp_path):
    """Zarr reads a missing chunk file as fill values: training learnt from zeros without a word. The arrays now
    write every chunk, so a missing file is damage: train stops in one line naming it, before touching last.pt."""
    root, cache = _copy(made, tmp_path)
    run = tmp_path / "run"
    clean = cli("train", "--cache", cache, "--dataset", "demo", *TRAIN, "--out", run, cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    want, last = json.loads((run / "metrics.json").read_text()), (run / "last.pt").read_bytes()
    before = store.open_video(cache, "demo", "c")["resnet50"][:]
    chunk = _delete_chunk(cache, "c", "resnet50")

    r = cli("train", "--cache", cache, "--dataset", "demo", *TRAIN, "--out", tmp_path / "fresh", cwd=tmp_path)
    _says_damaged(r, cache, chunk, "c", "resnet50")
    assert not (tmp_path / "fresh" / "last.pt").exists()   # stopped before the first epoch
    r = cli("train", "--cache", cache, "--dataset", "demo", *TRAIN, "--out", run, "--resume", cwd=tmp_path)
    fix = _says_damaged(r, cache, chunk, "c", "resnet50")
    assert (run / "last.pt").read_bytes() == last

    r = features(cache, root, *shlex.split(fix.group(2)))   # the command the message gives: it sees the lost file itself
    no_traceback(r)
    assert r.returncode == 0, r.stdout + r.stderr
    assert chunk.is_file() and store.check_arrays(cache, "demo", "c", ["resnet50"])
    np.testing.assert_array_equal(store.open_video(cache, "demo", "c")["resnet50"][:], before)
    r = cli("train", "--cache", cache, "--dataset", "demo", *TRAIN, "--out", run, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads((run / "metrics.json").read_text())
    for k in ("ccc_arousal", "ccc_valence", "rmse_arousal", "rmse_valence"):
        assert got[k] == want[k], k


def _two_chunks(cache: Path) -> tuple[zarr.Group, Path, np.ndarray]:
    """A done video of 2 chunks whose second resnet50 chunk is all fill value (zeros: frames with no face)."""
    data = np.zeros((2 * store.CHUNK_T, 2048), "f2")
    data[:store.CHUNK_T] = np.random.default_rng(0).standard_normal((store.CHUNK_T, 2048))
    store.write_video(cache, "demo", "v", {"resnet50": data}, {"fps": 30.0})
    return store.open_video(cache, "demo", "v"), store.video_dir(cache, "demo", "v") / "resnet50", data


def test_a_lost_chunk_file_met_while_reading_is_named_and_marked(tmp_path):
    """A file lost after the readers' check (check_arrays) is met by read_array: ChunkMissing naming it, and
    read_rows' one-line DamagedArray marks the array for `features` as a chunk cut short does."""
    from pipeline import chunks

    cache = tmp_path / "cache"
    group, where, data = _two_chunks(cache)
    second = _chunk_file(group["resnet50"], where, 1)
    assert second.is_file()   # all fill value, written all the same: its absence can only be damage
    assert store.check_arrays(cache, "demo", "v", ["resnet50"])
    second.unlink()
    with pytest.raises(store.UnusableVideo, match=re.escape(str(second))):
        store.check_arrays(cache, "demo", "v", ["resnet50"])
    assert "resnet50" in store.unusable_arrays(group)   # so `features` rebuilds it, marked or not
    assert np.array_equal(chunks.read_array(group["resnet50"], where, 0, 10), data[:10])   # chunk 0 is there
    with pytest.raises(chunks.ChunkMissing, match=re.escape(str(second.relative_to(where)))):
        chunks.read_array(group["resnet50"], where, store.CHUNK_T, store.CHUNK_T + 10)
    with pytest.raises(chunks.DamagedArray) as e:
        chunks.read_rows(cache, "demo", "v", group, "resnet50", 0, 2 * store.CHUNK_T)
    assert e.value.path == str(second) and "\n" not in str(e.value) and "ChunkMissing" in e.value.problem
    assert "--cache" in e.value.hint and "marked damaged" in e.value.hint
    assert store.video_fingerprints(cache, "demo", "v")["resnet50"] == "damaged"


def test_an_array_made_before_reads_its_unwritten_fill_chunk_as_before(tmp_path):
    """An array without the every-chunk mark (made before) never wrote its all-fill chunks: a missing file there is
    a chunk of fill values, read as such, and no reader refuses the array."""
    from pipeline import chunks

    cache = tmp_path / "cache"
    group, where, data = _two_chunks(cache)
    old = zarr.open_group(store.video_dir(cache, "demo", "v"), mode="r+")
    arr = old.create_array("resnet50", shape=data.shape, chunks=(store.CHUNK_T, 2048), dtype="f2", fill_value=0,
                           compressors=store.codecs("f2"), overwrite=True,
                           config={"write_empty_chunks": False})   # as earlier versions made them: no mark, Zarr's default
    arr[:] = data
    assert not _chunk_file(arr, where, 1).exists() and not dict(arr.attrs)
    assert store.check_arrays(cache, "demo", "v", ["resnet50"]) and not store.unusable_arrays(old)
    assert np.array_equal(chunks.read_array(arr, where, 0, len(data)), data)
    got = chunks.read_rows(cache, "demo", "v", store.open_video(cache, "demo", "v"), "resnet50", 0, len(data))
    assert np.array_equal(got, data)


def test_a_resumed_writer_writes_every_chunk_too(tmp_path):
    """Zarr's write_empty_chunks is a runtime setting, not stored: a writer reopening a group to resume it must set
    it again, or a resumed block with no face (all fill value) leaves no file and the array reads as damaged."""
    cache = tmp_path / "cache"
    w = store.VideoWriter(cache, "demo", "v", ["resnet50"], {"fps": 30.0})
    w.append("resnet50", np.ones((store.CHUNK_T, 2048), "f2"))
    w.commit({"frames": store.CHUNK_T})
    record = dict(store.open_video(cache, "demo", "v").attrs["progress"])
    w = store.VideoWriter(cache, "demo", "v", ["resnet50"], {}, resume=record)
    w.append("resnet50", np.zeros((store.CHUNK_T, 2048), "f2"))
    w.finish({"resnet50": "x"}, {})
    assert store.check_arrays(cache, "demo", "v", ["resnet50"]) == {"resnet50": "x"}


# ---------------------------------------------------------------- arrays made before chunk tracking


def _as_made_before(cache: Path, video: str) -> None:
    """Every array of a video's group rewritten as earlier versions made it: the same values, chunks, codecs and fill
    value, but no every-chunk mark and Zarr's old default, which writes no file for a chunk all of fill value."""
    g = zarr.open_group(store.video_dir(cache, "demo", video), mode="r+")
    for name in list(g.array_keys()):
        arr = g[name]
        data = arr[:]
        old = g.create_array(name, shape=arr.shape, chunks=arr.chunks, dtype=arr.dtype, fill_value=arr.fill_value,
                             compressors=arr.compressors, overwrite=True, config={"write_empty_chunks": False})
        old[:] = data


def _chunk_files(cache: Path, video: str) -> dict[str, dict[Path, bytes | None]]:
    """{array: {its time chunk file: its bytes, None if absent}} of a video's group."""
    g, where = store.open_video(cache, "demo", video), store.video_dir(cache, "demo", video)
    out = {}
    for name in g.array_keys():
        arr = g[name]
        files = [_chunk_file(arr, where / name, c) for c in range(-(-arr.shape[0] // arr.chunks[0]))]
        out[name] = {f: f.read_bytes() if f.is_file() else None for f in files}
    return out


def _marked(cache: Path, video: str) -> dict[str, bool]:
    g = store.open_video(cache, "demo", video)
    return {name: bool(g[name].attrs.get("every_chunk_written")) for name in g.array_keys()}


def test_features_marks_arrays_made_before_whose_every_chunk_file_is_present(made, tmp_path):
    """A cache made before chunk tracking: a lost chunk file read as zeros. A `features` run that finds every chunk
    file of an old array present marks it (re-extracting nothing), so a file lost afterwards is named by readers."""
    root, cache = _copy(made, tmp_path)
    for v in VIDEOS:
        _as_made_before(cache, v)
    files = {v: _chunk_files(cache, v) for v in VIDEOS}
    assert all(None not in f.values() for v in VIDEOS for f in files[v].values())   # nothing all fill in these
    assert not any(m for v in VIDEOS for m in _marked(cache, v).values())
    attrs = {v: dict(store.open_video(cache, "demo", v).attrs) for v in VIDEOS}
    n_arrays = sum(len(files[v]) for v in VIDEOS)

    r = features(cache, root)
    no_traceback(r)
    assert r.returncode == 0 and "done: 0 new, 0 updated, 3 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    assert f"marked {n_arrays} arrays made before chunk tracking" in r.stdout, r.stdout
    for v in VIDEOS:
        assert all(_marked(cache, v).values()), v
        assert _chunk_files(cache, v) == files[v] and dict(store.open_video(cache, "demo", v).attrs) == attrs[v]
    r = features(cache, root)   # marked once: the next run has nothing to mark
    assert r.returncode == 0 and "arrays made before chunk tracking" not in r.stdout, r.stdout

    chunk = _delete_chunk(cache, "c", "dphase_s0")   # on the code before, read as zeros without a word
    r = cli("inspect", "--cache", cache, "--dataset", "demo", "--video", "c", "--out", tmp_path / "png", cwd=tmp_path)
    _says_damaged(r, cache, chunk, "c", "dphase_s0")


@pytest.fixture(scope="module")
def faceless(tmp_path_factory):
    """A labelled video with no face at all, extracted, then its arrays rewritten as made before chunk tracking: the
    face arrays are one chunk of fill values, which Zarr's old default never wrote."""
    base = tmp_path_factory.mktemp("faceless")
    root = base / "data"
    (root / "videos" / "train").mkdir(parents=True)
    write_face_video(root / "videos" / "train" / "d.avi", N, size=(240, 180), no_face=(0, N), fourcc="MJPG")
    for dim in ("arousal", "valence"):
        (root / "annotations" / "train" / dim).mkdir(parents=True)
        np.savetxt(root / "annotations" / "train" / dim / "d.txt", np.linspace(-1, 1, N), fmt="%.4f")
    cache = base / "cache"
    r = features(cache, root, "--stages", "align,motion")
    assert r.returncode == 0 and "done: 1 new" in r.stdout, r.stdout + r.stderr[-3000:]
    _as_made_before(cache, "d")
    return root, cache


def test_an_array_made_before_with_an_absent_chunk_file_stays_unmarked_and_info_says_so(faceless, tmp_path):
    """Where a chunk file of an old array is absent, it may be a chunk of fill values Zarr skipped (here: no face) or
    a lost one: `features` leaves the array unmarked, it reads as fill values as before, and `info` says how many such
    arrays there are, in which videos, and the command that makes sure."""
    from pipeline import chunks

    root, cache = _copy(faceless, tmp_path)
    files = _chunk_files(cache, "d")
    absent = sorted(n for n, f in files.items() if None in f.values())
    whole = sorted(n for n, f in files.items() if None not in f.values())
    assert {"valid", "face48"} <= set(absent) and "labels" in whole, files   # no face: all fill; labels from files
    info = cli("info", "--cache", cache, cwd=tmp_path)
    assert f"{len(files)} arrays made before chunk tracking, unmarked" in info.stdout, info.stdout
    assert f"the next `features` run marks the {len(whole)} with every chunk file present" in info.stdout

    r = features(cache, root, "--stages", "align,motion")
    no_traceback(r)
    assert r.returncode == 0 and "done: 0 new, 0 updated, 1 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    assert f"marked {len(whole)} arrays made before chunk tracking" in r.stdout, r.stdout
    assert _marked(cache, "d") == {n: n in whole for n in files} and _chunk_files(cache, "d") == files
    g = store.open_video(cache, "demo", "d")
    assert store.check_arrays(cache, "demo", "d", absent) and not store.unusable_arrays(g)
    assert not chunks.read_rows(cache, "demo", "d", g, "valid", 0, N).any()   # its fill value, as before
    assert not chunks.read_rows(cache, "demo", "d", g, "face48", 0, N).any()

    info = cli("info", "--cache", cache, cwd=tmp_path)
    assert info.returncode == 0, info.stdout + info.stderr
    lines = [line.strip() for line in info.stdout.splitlines()]
    assert f"{len(absent)} arrays made before chunk tracking, unmarked: a lost chunk file reads as fill values" in lines
    said = next(line for line in lines if line.startswith(f"{len(absent)} of them have absent chunk files (videos d)"))
    assert "read as fill values" in said and f"run `python cli.py features --dataset demo --cache {cache} --stages " \
        f"align,motion --root {root.resolve()} --force` (--force: every video is extracted again)" in said, said
