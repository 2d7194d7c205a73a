"""A stage's output may not change while its fingerprint stays the same (a cache would silently mix the two).

For each stage (face from the video, from organiser crops and from an OpenFace CSV, dphase, phase, flow, resnet50 with
random weights) this computes the output on a fixed small
input through the pipeline's own code, and compares it with the record in tests/data/stage_digests.json:

- output changed, fingerprint unchanged -> FAIL: bump the stage's version (pipeline/arrays.py Kind.version, or
  features.motion.MOTION_VERSION for the motion maths), then record;
- fingerprint changed -> FAIL until recorded, so the record always guards the current code.

Recording is one deliberate step: `pytest tests/test_digests.py --update-digests` (commit the JSON with the bump).

A digest is not a hash of the bits: float results differ in the last bits across CPUs (SIMD paths in torch, dlib,
OpenCV), so a hash would fail on a fresh CI machine with the same pinned packages. It is a few fixed random
projections of each output (plus its mean and spread), compared to within 0.1% of the output's norm: float noise
is about 1e-6 of it, a change of the maths far more.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from openface_csv import write_openface_csv
from synth_video import astronaut, write_face_video

from features.face import FaceTracker
from features.video import iter_chunks
from pipeline import arrays, compute, settings
from pipeline import faces as face_sources
from pipeline.manifest import VideoEntry

RECORD = Path(__file__).resolve().parent / "data" / "stage_digests.json"
FIXED_FACE_FP = "fixed-input"   # the derived stages are fed fixed faces: their digests do not depend on the face's
RTOL = 1e-3
K = 8


def signature(x: np.ndarray) -> list[float]:
    """mean, std and K fixed random projections of an output (float64; NaN as 0)."""
    v = np.nan_to_num(np.asarray(x, np.float64).ravel())
    p = np.random.default_rng(12345).standard_normal((K, v.size))
    return [float(v.mean()), float(v.std()), *map(float, p @ v)]


def matches(sig: list[float], ref: list[float], size: int) -> bool:
    """Projections within RTOL of the output's norm (sqrt(size) * rms), mean/std within RTOL of the rms."""
    rms = float(np.hypot(ref[0], ref[1])) or 1.0
    tol = RTOL * rms * np.sqrt(size)
    return bool(np.all(np.abs(np.subtract(sig[:2], ref[:2])) <= RTOL * rms)
                and np.all(np.abs(np.subtract(sig[2:], ref[2:])) <= tol))


def fixed_faces48(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """n gray 48x48 faces moving by a quarter pixel a frame, integer maths only (bit-stable); frame 5 invalid."""
    img = astronaut().astype(np.int64)
    gray = (img[..., 0] * 299 + img[..., 1] * 587 + img[..., 2] * 114) // 1000
    faces = np.zeros((n, 48, 48), np.uint8)
    for t in range(n):
        crop = gray[30 + t:222 + t, 130 + (t % 5):322 + (t % 5)]          # 192 x 192, shifted 1 source pixel
        faces[t] = (crop.reshape(48, 4, 48, 4).sum(axis=(1, 3)) // 16).astype(np.uint8)
    valid = np.ones(n, bool)
    valid[5] = False
    faces[5] = 0
    return faces, valid


def fixed_faces224(n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """n RGB 224x224 crops of the astronaut photograph (slices only: bit-stable)."""
    img = astronaut()
    return np.stack([img[20 + 8 * t:244 + 8 * t, 110 + 6 * t:334 + 6 * t] for t in range(n)]), np.ones(n, bool)


def stage_outputs(stage: str, tmp: Path) -> tuple[str, dict[str, np.ndarray]]:
    """(fingerprint, {array: output}) of one stage on its fixed input, through the pipeline's code."""
    s = settings.Settings(weights="random")
    if stage == "face":
        path = tmp / "face.avi"
        write_face_video(path, 40, size=(320, 240), fourcc="MJPG", motion="translate_rotate", seed=0)
        blocks = list(compute.video_blocks(VideoEntry("face", path, "train"), s, lambda k: None))
        out = {n: np.concatenate([b[n] for b in blocks]) for n in ("valid", "landmarks", "face48")}
        return settings.face_fingerprint(s), out
    if stage == "face_crops":   # faces from organiser crops: fixed 112x112 JPEGs, frames 3 and 7 without a crop
        s = settings.Settings(weights="random", faces="cropped_aligned", faces_dir=str(tmp))
        (tmp / "crops").mkdir()
        img = astronaut()
        for t in (0, 1, 2, 4, 5, 6, 8, 9):
            crop = cv2.resize(img[20 + 4 * t:244 + 4 * t, 110 + 3 * t:334 + 3 * t], (112, 112),
                              interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(tmp / "crops" / f"{t + 1:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        blocks = list(face_sources.crop_blocks(VideoEntry("crops", None, "train"), s, lambda k: None, {}, 11))
        out = {n: np.concatenate([b[n] for b in blocks]) for n in ("valid", "face48", "face224")}
        return settings.face_fingerprint(s), out
    if stage == "face_openface":   # landmarks from an OpenFace CSV (dlib's, one decimal), our smoothed alignment
        path = tmp / "face.avi"
        write_face_video(path, 40, size=(320, 240), fourcc="MJPG", motion="translate_rotate", seed=0)
        frames = np.concatenate([c.frames for c in iter_chunks(path)])
        tracked = FaceTracker().process(frames)
        write_openface_csv(tmp / "face.csv", [(tracked.landmarks, tracked.valid)])
        s = settings.Settings(weights="random", faces="openface", faces_dir=str(tmp))
        blocks = list(face_sources.face_blocks(VideoEntry("face", path, "train"), s, lambda k: None, {}))
        out = {n: np.concatenate([b[n] for b in blocks]) for n in ("valid", "landmarks", "face48")}
        return settings.face_fingerprint(s), out
    if stage == "resnet50":
        faces, valid = fixed_faces224()
        comp = compute.computers(["resnet50"], s, {})[0]
        fp = settings.array_fingerprint("resnet50", FIXED_FACE_FP, encoder_fp=settings.encoder_fingerprint(s))
        return fp, comp({"face224": faces, "valid": valid})
    faces, valid = fixed_faces48()
    kind, variant = arrays.parse_input(stage)   # "dphase", or a built-in motion variant "dphase@v1"
    motion = dict(arrays.MOTION_VARIANTS[variant]) if variant else {}
    names = [arrays.array_name(p, variant) for p in kind.parts]
    comp = compute.computers(names, s, {variant: motion})[0]
    out = {}
    for lo in (0, 8):   # two blocks: the previous face (the paper variant's turns) is carried across, as in the pipeline
        for name, a in comp({"face48": faces[lo:lo + 8], "valid": valid[lo:lo + 8]}).items():
            out.setdefault(name, []).append(a)
    fp = settings.array_fingerprint(names[0], FIXED_FACE_FP, motion)
    return fp, {n: np.concatenate(v) for n, v in out.items()}


STAGES = ("face", "face_crops", "face_openface", "dphase", "phase", "flow", "resnet50", "dphase@v1", "phase@v1",
          "dphase@paper")


def _versions() -> dict:
    from features.motion import MOTION_VERSION

    return {"MOTION_VERSION": MOTION_VERSION, **{f"{k.name}": k.version for k in arrays.KINDS.values()}}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_output_changes_only_with_its_fingerprint(stage, tmp_path, request):
    fp, out = stage_outputs(stage, tmp_path)
    now = {"fingerprint": fp, "arrays": {n: {"size": int(np.asarray(a).size), "signature": signature(a)}
                                         for n, a in sorted(out.items())}}
    record = json.loads(RECORD.read_text()) if RECORD.is_file() else {"stages": {}}
    if request.config.getoption("--update-digests"):
        record["stages"][stage] = now
        record["versions"] = _versions()
        record["note"] = "written by `pytest tests/test_digests.py --update-digests`; see that file"
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        return
    ref = record["stages"].get(stage)
    assert ref is not None, f"no digest recorded for {stage}: run `pytest tests/test_digests.py --update-digests`"
    changed = [n for n, a in now["arrays"].items()
               if n not in ref["arrays"] or not matches(a["signature"], ref["arrays"][n]["signature"], a["size"])]
    if ref["fingerprint"] == fp:
        assert not changed, (f"{stage}: the output of {changed} changed but its fingerprint did not: a cache would "
                             f"mix old and new rows. Bump the stage's version (pipeline/arrays.py Kind.version, or "
                             f"features.motion.MOTION_VERSION), then run `pytest tests/test_digests.py --update-digests`")
    else:
        pytest.fail(f"{stage}: its fingerprint changed ({ref['fingerprint']} -> {fp}); if that is deliberate, record "
                    f"it: `pytest tests/test_digests.py --update-digests` (and commit tests/data/stage_digests.json)")


@pytest.mark.parametrize("stage", ["dphase", "phase"])
def test_the_v1_variant_is_the_default_before_issue_17(stage, tmp_path):
    """`v1` must give what plain dphase/phase gave before issue 17 changed the defaults: the record keeps those
    digests ("before_issue_17", recorded by main at 9bae791 on these fixed inputs; --update-digests leaves them)."""
    _, out = stage_outputs(f"{stage}@v1", tmp_path)
    before = json.loads(RECORD.read_text())["before_issue_17"][stage]["arrays"]
    assert sorted(before) == sorted(arrays.split_name(n)[0] for n in out)
    for name, a in out.items():
        ref = before[arrays.split_name(name)[0]]
        assert matches(signature(a), ref["signature"], ref["size"]), f"{name} is not the old default's output"


def test_signature_sees_a_small_change_and_not_float_noise():
    faces, valid = fixed_faces48()
    x = faces.astype(np.float64)
    ref = signature(x)
    assert matches(signature(x * (1 + 1e-6)), ref, x.size)       # float noise: the same
    y = x.copy()
    y[3] += 2.0                                                  # two gray levels on one frame of sixteen
    assert not matches(signature(y), ref, x.size)
