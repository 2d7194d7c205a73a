"""features.face on real OpenCV-encoded videos of a real face (the astronaut), with the real dlib model."""
import json

import cv2
import numpy as np
import pytest
from people_video import portrait_landmarks, two_people, write_people_video
from synth_video import astronaut, write_face_video

from features import face as F
from features.errors import BadInputError
from features.video import iter_chunks


def track(path, chunk_size=32, **kw):
    tracker = F.FaceTracker(**kw)
    return F.AlignedFaces.concat([tracker.process(c.frames) for c in iter_chunks(path, chunk_size)])


@pytest.fixture(scope="module")
def photo_landmarks():
    """Landmarks of the still photograph at full resolution: mapped by the known motion, the truth per frame."""
    _, detector, predictor = F._dlib()
    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    (box,) = detector(gray, 1)
    return np.array([(p.x, p.y) for p in predictor(gray, box).parts()], float)


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """320x240, 90 frames, translating and rotating, face removed for frames 40..49."""
    path = tmp_path_factory.mktemp("face") / "moving.mp4"
    truth = write_face_video(path, 90, size=(320, 240), motion="translate_rotate", no_face=(40, 50))
    return path, truth, track(path)


def test_photo_face_is_where_the_synth_expects(photo_landmarks):
    lo, hi = photo_landmarks.min(0), photo_landmarks.max(0)
    assert 140 < lo[0] and hi[0] < 330 and 30 < lo[1] and hi[1] < 250  # cols 140-330, rows 30-250
    np.testing.assert_allclose(photo_landmarks.mean(0), [224, 127], atol=2)


def test_landmarks_follow_a_known_translation(tmp_path, photo_landmarks):
    path = tmp_path / "translate.mp4"
    truth = write_face_video(path, 60, size=(320, 240), motion="translate")
    out = track(path)
    assert out.valid.all()
    got = out.landmarks.mean(1) - out.landmarks[0].mean(0)
    want = np.array([truth.map_points(photo_landmarks, t).mean(0) for t in range(60)])
    want -= want[0]
    err = np.abs(got - want).max()
    print(f"max error of the mean-landmark displacement: {err:.2f} px (path spans {np.ptp(want, 0)} px)")
    assert np.ptp(want[:, 0]) > 60 and err < 1.5


def test_landmarks_follow_translation_and_rotation(moving, photo_landmarks):
    _, truth, out = moving
    errs = [np.linalg.norm(out.landmarks[t] - truth.map_points(photo_landmarks, t), axis=1).mean()
            for t in np.flatnonzero(out.valid)]
    print(f"mean landmark error per frame: median {np.median(errs):.2f} px, max {np.max(errs):.2f} px")
    assert np.median(errs) < 1.5 and np.max(errs) < 3.0


def test_frames_without_a_face_are_invalid_not_dropped(moving):
    _, truth, out = moving
    assert len(out) == 90
    np.testing.assert_array_equal(out.valid, truth.present)
    assert np.isnan(out.landmarks[~out.valid]).all() and np.isfinite(out.landmarks[out.valid]).all()
    assert not out.face48[~out.valid].any() and not out.face224[~out.valid].any()


def test_tracking_replaces_most_detections(moving):
    _, _, out = moving
    # Detections: the first frame, every frame of the gap (searching), its end, and the scheduled re-detections.
    assert out.detected[0] and out.detected[40:51].all()
    assert out.detected.sum() <= 16


def test_aligned_gray_crop_is_nearly_constant(moving):
    path, _, out = moving
    crops = out.face48[out.valid].astype(float)
    residual = np.abs(crops - np.median(crops, 0)).mean()
    # Reference: fixed 48x48 crops of the same frames, without alignment.
    frames = np.concatenate([c.frames for c in iter_chunks(path)])[out.valid]
    fixed = np.stack([cv2.resize(cv2.cvtColor(f[40:200, 80:240], cv2.COLOR_RGB2GRAY), (48, 48),
                                 interpolation=cv2.INTER_AREA) for f in frames]).astype(float)
    unaligned = np.abs(fixed - np.median(fixed, 0)).mean()
    print(f"48x48 residual: aligned {residual:.2f} gray levels, unaligned {unaligned:.2f}")
    assert residual < 5.0 and residual < 0.3 * unaligned
    assert out.face224.shape[1:] == (224, 224, 3) and out.face48.shape[1:] == (48, 48)


def test_result_does_not_depend_on_chunking(moving):
    path, _, out = moving
    tracker = F.FaceTracker()
    parts = []
    for chunk in iter_chunks(path, chunk_size=7):  # 49 frames: a scheduled detection at 30, the gap from 40
        parts.append(tracker.process(chunk.frames))
        if chunk.start >= 42:
            break
    other = F.AlignedFaces.concat(parts)
    np.testing.assert_array_equal(other.valid, out.valid[:49])
    np.testing.assert_array_equal(other.landmarks, out.landmarks[:49])
    np.testing.assert_array_equal(other.face48, out.face48[:49])


def test_small_176x144_clip(tmp_path, photo_landmarks):
    path = tmp_path / "small.mp4"
    truth = write_face_video(path, 30, size=(176, 144), motion=lambda u: (8 * np.sin(2 * np.pi * u), 0.0, 0.0))
    out = track(path)
    assert out.valid.all()
    err = np.mean([np.linalg.norm(out.landmarks[t] - truth.map_points(photo_landmarks, t), axis=1).mean()
                   for t in range(30)])
    assert err < 1.5  # the face box is ~48 px here


def test_align_faces_from_given_landmarks(moving):
    path, _, out = moving
    frames = next(iter_chunks(path, 16)).frames
    lm = out.landmarks[:16].copy()
    valid = np.ones(16, bool)
    valid[3] = False
    lm[5] = np.nan  # NaN landmarks make a frame invalid too
    got = F.align_faces(frames, lm, valid)
    assert not got.valid[3] and not got.valid[5] and got.valid.sum() == 14
    np.testing.assert_array_equal(got.face48[got.valid], out.face48[:16][got.valid])
    assert not got.face224[3].any() and np.isnan(got.landmarks[3]).all()


def test_template_puts_the_rigid_points_at_the_centre():
    t = F.template(224)
    np.testing.assert_allclose(t[list(F.RIGID)].mean(0), [112, 112])
    assert 0 < t.min() and t.max() < 224  # the whole mean face fits in the crop
    np.testing.assert_allclose(t[45, 0] - t[36, 0], F.TEMPLATE_SCALE * 224 * 0.5723, rtol=0.01)  # eye corners


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(13, 2)) * 50
    m = cv2.getRotationMatrix2D((10, 20), 23.0, 1.7)
    np.testing.assert_allclose(F.similarity_transform(src, src @ m[:, :2].T + m[:, 2]), m, atol=1e-9)


def test_params_are_json():
    params = F.FaceTracker(detect_every=12).params
    assert json.loads(json.dumps(params))["detect_every"] == 12


def test_missing_model_says_what_to_install(monkeypatch):
    monkeypatch.setattr(F.importlib.util, "find_spec", lambda name: None)
    F.model_path.cache_clear()
    try:
        with pytest.raises(BadInputError, match="pip install face-recognition-models"):
            F.model_path()
    finally:
        monkeypatch.undo()
        F.model_path.cache_clear()
    assert F.model_path().is_file()


def test_several_faces_start_with_largest_then_keep_the_tracked_one(tmp_path):
    path = tmp_path / "two.mp4"
    # The tracked face (small, left) is alone for 10 frames, then a larger face appears on the right.
    truth = write_face_video(path, 40, size=(480, 240), motion=lambda u: (-110.0, 0.0, 0.0), scale=0.8,
                             second_face=(110.0, 0.0, 1.0, 10))
    frames = np.concatenate([c.frames for c in iter_chunks(path)])
    out = F.FaceTracker(detect_every=5).process(frames)
    assert out.valid.all() and out.detected.sum() >= 7
    np.testing.assert_allclose(out.landmarks.mean(1)[:, 0], truth.map_points(np.array([[224.0, 127.0]]), 0)[0, 0],
                               atol=3)  # on the left face throughout, across the scheduled detections
    fresh = F.FaceTracker(detect_every=5).process(frames[10:])
    assert (fresh.landmarks.mean(1)[:, 0] > 300).all()  # a fresh start takes the larger face (x = 350)


# ---- two-person videos (Aff-Wild2 <video>_left / <video>_right) ---------------------------------------------

@pytest.fixture(scope="module")
def two_person(tmp_path_factory):
    """The two_people scene (120 frames, 480x240), tracked from each side in 32-frame chunks."""
    path = tmp_path_factory.mktemp("two") / "two.mp4"
    people = two_people(120)
    truths = write_people_video(path, 120, people)
    out = {side: track(path, side=side) for side in ("left", "right", "largest")}
    return path, people, truths, out


def landmark_errors(out, person, truth):
    """Mean landmark distance to this person's truth per frame (NaN where the output has no face)."""
    lm = portrait_landmarks(person.photo)
    return np.array([np.linalg.norm(out.landmarks[t] - truth.map_points(lm, t), axis=1).mean() if out.valid[t]
                     else np.nan for t in range(len(out))])


@pytest.mark.parametrize("side,k", [("left", 0), ("right", 1)])
def test_each_side_follows_its_own_person(two_person, side, k):
    _, people, truths, out = two_person
    got = out[side]
    np.testing.assert_array_equal(got.valid, truths[k].present)  # invalid exactly while its person is away
    assert np.isnan(got.landmarks[~got.valid]).all() and not got.face48[~got.valid].any()
    errs = landmark_errors(got, people[k], truths[k])[got.valid]
    print(f"{side}: landmark error against the truth: median {np.median(errs):.2f} px, max {errs.max():.2f} px")
    assert np.median(errs) < 1.5 and errs.max() < 3.0


def test_largest_face_mixes_the_two_people(two_person):
    """The scene makes the choice matter: the largest face is Grace Hopper's, then the astronaut's while Grace is away."""
    _, people, truths, out = two_person
    on_left = landmark_errors(out["largest"], people[0], truths[0]) < 3
    on_right = landmark_errors(out["largest"], people[1], truths[1]) < 3
    assert on_right[:30].all() and on_left[~truths[1].present].all()


def test_a_lone_face_on_the_far_half_is_not_taken_without_a_partner(two_person):
    path, _, truths, _ = two_person
    frames = np.concatenate([c.frames for c in iter_chunks(path)])
    only_right = np.flatnonzero(~truths[0].present)  # Grace Hopper alone, right of the centre
    assert not F.FaceTracker(side="left").process(frames[only_right]).valid.any()
    assert F.FaceTracker(side="right").process(frames[only_right]).valid.all()


def test_side_is_part_of_the_params():
    assert F.FaceTracker().params["side"] == "largest" and F.FaceTracker(side="left").params["side"] == "left"
    with pytest.raises(ValueError, match="side"):
        F.FaceTracker(side="middle")
