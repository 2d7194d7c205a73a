"""Named variants of a feature side by side in one cache, and `features` with video files as arguments.

Real videos, the real CLI (in-process), a real LocalCluster and Zarr cache.
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from synth_video import write_face_video

import cli
from pipeline import settings, store
from pipeline.manifest import videos_from_files


def _features(*args) -> object:
    return CliRunner().invoke(cli.main, ["features", *map(str, args), "--workers", "1", "--no-progress"])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    files = []
    for i in range(2):
        files.append(d / f"v{i}.avi")
        write_face_video(files[-1], 40, size=(320, 240), fourcc="MJPG", seed=i)
    c = tmp_path_factory.mktemp("cache")
    res = _features(*files, "--cache", c, "--stages", "align,motion")   # files as arguments, like predict
    assert res.exit_code == 0, res.output
    return files, c


def test_video_files_as_arguments_and_with_videos(cache):
    files, c = cache
    for f in files:
        assert store.group_status(c, "videos", f.stem) == "done"
    res = _features("--videos", files[0], "--cache", c, "--stages", "align,motion", "--dry-run")
    assert res.exit_code == 0 and "v0" in res.output and "1 already done" in res.output


def test_motion_flags_without_a_name_are_refused_with_a_suggestion(cache):
    files, c = cache
    res = _features(*files, "--cache", c, "--stages", "align,motion", "--motion-mean-window", "9")
    assert res.exit_code == 2 and "--motion-variant mw9" in res.output


def test_a_variant_is_added_beside_the_default_and_recorded(cache):
    files, c = cache
    before = {f.stem: store.open_video(c, "videos", f.stem)["dphase_s0"][:] for f in files}
    fps_before = {f.stem: store.video_fingerprints(c, "videos", f.stem) for f in files}
    res = _features(*files, "--cache", c, "--stages", "align,motion", "--motion-variant", "mw9",
                    "--motion-mean-window", "9")
    assert res.exit_code == 0, res.output
    assert "0 new, 2 updated" in res.output and " 0.0 frames/s decoded" in res.output   # from cached faces
    for f in files:
        g = store.open_video(c, "videos", f.stem)
        np.testing.assert_array_equal(g["dphase_s0"][:], before[f.stem])      # the default is untouched
        fps = dict(g.attrs["fingerprints"])
        assert all(fps[n] == fp for n, fp in fps_before[f.stem].items())
        assert not np.array_equal(g["dphase_s0@mw9"][:], before[f.stem])
        assert fps["dphase_s0@mw9"] != fps["dphase_s0"]
        assert g.attrs["made_with"]["dphase_s0@mw9"]["motion"] == {"mean_window": 9}
        store.check_arrays(c, "videos", f.stem, ["dphase_s0@mw9", "dphase_s1@mw9", "dphase_s0"])
        # predict rebuilds the variant from what the group recorded: same fingerprints on this video
        s = settings.settings_for(dict(g.attrs), ["dphase_s0@mw9", "dphase_s1@mw9"])
        assert s.motion_variant == "mw9" and s.motion == {"mean_window": 9}
        want = settings.fingerprints(s, videos_from_files([f])[0])
        assert {n: want[n] for n in ("dphase_s0@mw9", "face48")} == {n: fps[n] for n in ("dphase_s0@mw9", "face48")}
    # the name alone reuses the settings the cache recorded: nothing to do
    again = _features(*files, "--cache", c, "--stages", "align,motion", "--motion-variant", "mw9")
    assert again.exit_code == 0 and "2 skipped" in again.output
    info = CliRunner().invoke(cli.main, ["info", "--cache", str(c)])
    assert any(ln.split()[:3] == ["dphase@mw9", "2/2", "mean_window=9"] for ln in info.output.splitlines())


def test_a_variant_under_other_settings_needs_replace(cache):
    files, c = cache
    res = _features(*files, "--cache", c, "--stages", "align,motion", "--motion-variant", "mw7",
                    "--motion-mean-window", "7")
    assert res.exit_code == 0, res.output
    old = store.open_video(c, "videos", "v0")["dphase_s0@mw7"][:]
    res = _features(*files, "--cache", c, "--stages", "align,motion", "--motion-variant", "mw7",
                    "--motion-mean-window", "5")
    assert res.exit_code == 2 and "--replace-variant" in res.output and "mean_window" in res.output
    np.testing.assert_array_equal(store.open_video(c, "videos", "v0")["dphase_s0@mw7"][:], old)
    res = _features(*files, "--cache", c, "--stages", "align,motion", "--motion-variant", "mw7",
                    "--motion-mean-window", "5", "--replace-variant")
    assert res.exit_code == 0 and "2 updated" in res.output
    g = store.open_video(c, "videos", "v0")
    assert not np.array_equal(g["dphase_s0@mw7"][:], old)
    assert g.attrs["made_with"]["dphase_s0@mw7"]["motion"] == {"mean_window": 5}


def test_builtin_paper_variant(cache):
    files, c = cache
    res = _features(*files, "--cache", c, "--stages", "align,motion", "--motion-variant", "paper")
    assert res.exit_code == 0, res.output
    g = store.open_video(c, "videos", "v0")
    assert g.attrs["made_with"]["dphase_s0@paper"]["motion"] == {"variant": "paper"}
    assert not np.array_equal(g["dphase_s0@paper"][:], g["dphase_s0"][:])


def test_pipeline_carries_the_paper_unwrap_across_blocks():
    """The pipeline computes ΔPhase block by block: the paper variant's unwrap (turns per pixel) must carry over,
    so blocks equal one whole-video call (a bare previous face would restart the unwrap at every block)."""
    from features.motion import MotionConfig, delta_phase
    from pipeline.compute import MotionComputer

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (56, 56)).astype(np.float64)
    # a slow drift of a textured face: the phase keeps increasing, so the unwrap accumulates turns
    faces = np.stack([np.roll(base, (t // 3, t // 2), (0, 1))[4:52, 4:52] for t in range(40)]).astype(np.uint8)
    valid = np.ones(40, bool)
    valid[25] = False
    whole = delta_phase(faces, valid, config=MotionConfig(variant="paper"))
    comp = MotionComputer("dphase", "paper", {"variant": "paper"})
    parts = [comp({"face48": faces[lo:hi], "valid": valid[lo:hi]}) for lo, hi in ((0, 16), (16, 32), (32, 40))]
    for s in ("s0", "s1"):
        np.testing.assert_array_equal(np.concatenate([p[f"dphase_{s}@paper"] for p in parts]), whole[s])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Three labelled videos in the demo's layout (one with a faceless stretch)."""
    root = tmp_path_factory.mktemp("demo")
    rng = np.random.default_rng(0)
    for i in range(3):
        vid = root / "videos" / "train" / f"v{i}.avi"
        vid.parent.mkdir(parents=True, exist_ok=True)
        write_face_video(vid, 40, size=(320, 240), fourcc="MJPG", seed=i, no_face=(20, 24) if i == 0 else None)
        for dim in ("arousal", "valence"):
            d = root / "annotations" / "train" / dim
            d.mkdir(parents=True, exist_ok=True)
            np.savetxt(d / f"v{i}.txt", rng.uniform(-1, 1, 40), fmt="%.4f")
    return root


@pytest.fixture(scope="module")
def v1_cache(labelled, tmp_path_factory):
    """The labelled videos' cache with the default dphase only (the test below adds dphase@v1)."""
    c = tmp_path_factory.mktemp("v1cache")
    assert _features("--dataset", "demo", "--root", labelled, "--cache", c, "--stages", "align,motion").exit_code == 0
    return c


def test_builtin_v1_variant_is_the_old_default_and_trains(labelled, v1_cache, tmp_path):
    """`--motion-variant v1` (or --motion-v1 naming it) keeps the ΔPhase of before issue 17 beside the new default,
    and `train --input dphase@v1` reads it."""
    from features.motion import MOTION_V1, MotionConfig, delta_phase
    from pipeline.compute import MOTION_BATCH

    c = v1_cache
    base = ["--dataset", "demo", "--root", labelled, "--cache", c, "--stages", "align,motion"]
    res = CliRunner().invoke(cli.main, ["inspect", "--cache", str(c), "--dataset", "demo", "--video", "v1", "--input",
                                        "dphase@v1", "--out", str(tmp_path / "look")])
    assert res.exit_code == 2 and "--motion-variant v1" in res.output   # not made yet: the command that makes it
    res = _features(*base, "--motion-v1")   # a changed setting without a name: the built-in name is suggested
    assert res.exit_code == 2 and "--motion-variant v1" in res.output
    res = _features(*base, "--motion-v1", "--motion-variant", "paper")
    assert res.exit_code == 2 and "built in" in res.output
    res = _features(*base, "--motion-v1", "--motion-variant", "v1")
    assert res.exit_code == 0, res.output
    assert "2 skipped" not in res.output and "3 updated" in res.output
    assert "3 skipped" in _features(*base, "--motion-variant", "v1").output   # the same variant by its name alone
    for v in ("v0", "v1", "v2"):
        g = store.open_video(c, "demo", v)
        assert g.attrs["made_with"]["dphase_s0@v1"]["motion"] == MOTION_V1
        faces, valid = g["face48"][:], g["valid"][:]
        # the pipeline's batches (pipeline.compute.MOTION_BATCH): the same products, so the same bits
        old = delta_phase(faces, valid, config=MotionConfig(**MOTION_V1), batch_size=MOTION_BATCH)
        new = delta_phase(faces, valid, batch_size=MOTION_BATCH)
        for s in ("s0", "s1"):
            np.testing.assert_array_equal(g[f"dphase_{s}@v1"][:], old[s].astype(np.float16))
            np.testing.assert_array_equal(g[f"dphase_{s}"][:], new[s].astype(np.float16))
        assert not np.array_equal(g["dphase_s0@v1"][:], g["dphase_s0"][:])
    out = tmp_path / "run"
    res = CliRunner().invoke(cli.main, [
        "train", "--cache", str(c), "--dataset", "demo", "--streams", "temporal", "--input", "dphase@v1",
        "--epochs", "1", "--folds", "3", "--width", "4", "--window", "4", "--num-workers", "0", "--threads", "1",
        "--no-plots", "--out", str(out)])
    assert res.exit_code == 0, res.output
    import json
    m = json.loads((out / "metrics.json").read_text())
    assert m["input"] == "dphase@v1" and "dphase_s0@v1" in m["fingerprints"] and "dphase_s0" not in m["fingerprints"]


def test_inspect_draws_a_variant_on_a_visible_scale(labelled, v1_cache, tmp_path):
    """inspect --input dphase@v1 draws that variant (files named after it), beside the default's; other inputs are
    refused; the colour scale follows the maps (a 0.1 rad micro-motion is not drawn on a ±1 rad scale)."""
    from pipeline.inspect_video import robust_scale

    c = v1_cache
    res = _features("--dataset", "demo", "--root", labelled, "--cache", c, "--stages", "align,motion",
                    "--motion-variant", "v1")   # skipped when the test above made it
    assert res.exit_code == 0, res.output
    look = tmp_path / "look"
    args = ["inspect", "--cache", str(c), "--dataset", "demo", "--video", "v1", "--frames", "5,10", "--out", str(look)]
    for extra in ([], ["--input", "dphase@v1"]):
        res = CliRunner().invoke(cli.main, args + extra)
        assert res.exit_code == 0, res.output
    names = {p.name for p in look.iterdir()}
    assert {"v1_faces.png", "v1_motion.png", "v1_faces_v1.png", "v1_motion_v1.png"} <= names
    res = CliRunner().invoke(cli.main, args + ["--input", "flow"])
    assert res.exit_code == 2 and "not ΔPhase" in res.output
    maps = np.zeros((4, 2, 48, 48), np.float32)
    maps[:, :, 20:30, 20:30] = 0.1   # a micro-motion's ~0.1 rad over 4% of the map
    maps[0, 0, 0, :3] = 10.0         # a few clamped wraps
    assert robust_scale(maps) == pytest.approx(0.1)
