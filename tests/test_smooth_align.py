"""Zero-phase landmark smoothing before alignment: chunk-invariant, keeps gaps, and removes alignment jitter."""
import numpy as np
import pytest
from synth_video import write_face_video

from features.face import FaceTracker, align_faces
from features.smooth_align import SmoothAligner
from features.video import iter_chunks


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "v.avi"
    write_face_video(path, 60, size=(320, 240), motion="translate_rotate", fourcc="MJPG", no_face=(40, 44))
    frames = np.concatenate([c.frames for c in iter_chunks(path, 32)])
    a = FaceTracker().process(frames)
    return frames, a.landmarks, a.valid


def _run(frames, lm, valid, sizes):
    sa, parts, lo = SmoothAligner(1.5), [], 0
    for k in sizes:
        out = sa.push(frames[lo:lo + k], lm[lo:lo + k], valid[lo:lo + k])
        parts += [out] if out is not None else []
        lo += k
    parts.append(sa.flush())
    return [np.concatenate([getattr(p, n) for p in parts if p is not None]) for n in ("face48", "valid", "landmarks")]


def test_output_does_not_depend_on_chunking(tracked):
    frames, lm, valid = tracked
    whole = _run(frames, lm, valid, [60])
    pieces = _run(frames, lm, valid, [1, 7, 3, 20, 29])
    for a, b in zip(whole, pieces):
        np.testing.assert_array_equal(a, b)
    assert len(whole[0]) == 60


def test_gaps_stay_invalid_and_landmarks_stay_raw(tracked):
    frames, lm, valid = tracked
    face48, v, out_lm = _run(frames, lm, valid, [60])
    np.testing.assert_array_equal(v, valid)
    assert not v[40:44].any() and v[:40].all()
    np.testing.assert_array_equal(out_lm[v], lm[v])


def test_smoothing_reduces_frame_to_frame_jitter(tracked):
    frames, lm, valid = tracked
    raw = align_faces(frames, lm, valid).face48.astype(np.float32)
    smooth = _run(frames, lm, valid, [60])[0].astype(np.float32)
    # the face moves smoothly, so what changes between consecutive aligned crops is mostly jitter
    jit_raw = np.abs(np.diff(raw[:40], axis=0)).mean()
    jit_smooth = np.abs(np.diff(smooth[:40], axis=0)).mean()
    assert jit_smooth < 0.8 * jit_raw, (jit_smooth, jit_raw)
