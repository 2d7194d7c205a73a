"""Gamma jitter (--gamma-jitter): each frame's gamma depends on (seed, sha256 of the whole video id, frame) only."""
from __future__ import annotations

import shutil

import numpy as np
from click.testing import CliRunner
from synth_video import write_face_video

import cli
from pipeline import store
from pipeline.compute import frame_gammas, jitter_frames


def test_gammas_depend_on_the_whole_video_id_and_the_frame_only():
    a = frame_gammas(0.5, 0, "video_001", range(20))
    assert not np.allclose(a, frame_gammas(0.5, 0, "video_002", range(20)))   # same first 8 bytes
    assert not np.allclose(a, frame_gammas(0.5, 1, "video_001", range(20)))
    np.testing.assert_array_equal(a[7:], frame_gammas(0.5, 0, "video_001", range(7, 20)))
    assert ((a >= 0.5) & (a <= 1.5)).all() and a.std() > 0.1


def test_jitter_does_not_depend_on_chunking_or_where_decoding_starts():
    frames = np.random.default_rng(0).integers(0, 256, (20, 12, 16, 3), dtype=np.uint8)
    whole = jitter_frames(frames, 0.4, 3, "clip", 0)
    parts = np.concatenate([jitter_frames(frames[lo:hi], 0.4, 3, "clip", lo) for lo, hi in ((0, 3), (3, 11), (11, 20))])
    np.testing.assert_array_equal(whole, parts)
    np.testing.assert_array_equal(whole[9:], jitter_frames(frames[9:], 0.4, 3, "clip", 9))   # a mid-video resume
    assert not np.array_equal(whole, frames)


def test_two_videos_with_one_prefix_are_jittered_differently(tmp_path):
    """The same file under two ids that share their first 8 bytes: the cached faces must differ."""
    write_face_video(tmp_path / "video_001.avi", 30, size=(320, 240), fourcc="MJPG", seed=0, motion="still")
    shutil.copy(tmp_path / "video_001.avi", tmp_path / "video_002.avi")
    cache = tmp_path / "cache"
    res = CliRunner().invoke(cli.main, ["features", "--videos", str(tmp_path / "video_001.avi"), "--videos",
                                        str(tmp_path / "video_002.avi"), "--cache", str(cache), "--stages", "align",
                                        "--gamma-jitter", "0.5", "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    a, b = (store.open_video(cache, "videos", v)["face48"][:].astype(int) for v in ("video_001", "video_002"))
    valid = store.open_video(cache, "videos", "video_001")["valid"][:]
    assert valid.mean() > 0.9
    # per-frame brightness ratio differs between the two: their gammas differ
    assert np.abs(a[valid].mean(axis=(1, 2)) - b[valid].mean(axis=(1, 2))).max() > 5
