"""Where faces come from: the video path (decode, dlib track, smoothed alignment) against the organisers' crops and
OpenFace CSVs, on the same video of the test builder's Aff-Wild2 layout (tests/affwild2_layout.py).

One 640x360 video of the astronaut (30 fps, BENCH_FACES_FRAMES frames, a stretch without a face), with its
cropped_aligned folder (112x112 JPEGs, five-point framing) and an OpenFace 2.0 CSV from dlib's landmarks. Per path,
the stages of `features` up to face48 ("align": what each path replaces) and then ΔPhase on those faces
("align+motion"), in the same process, one thread, each path timed alone in turn, repeated and the best kept.
Prints one JSON line: frames/s (CPU time) per path and the ratio of each to the video path.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import cv2
import numpy as np
import torch
from affwild2_layout import VideoSpec, build_affwild2_layout
from people_video import ASTRONAUT, Person

from features.aligned_crops import iter_crop_folder
from features.face import AlignedFaces, FaceTracker, _dlib
from features.motion import delta_phase
from features.openface import OpenFaceLandmarks
from features.smooth_align import SmoothAligner
from features.video import iter_chunks

N_FRAMES = int(os.environ.get("BENCH_FACES_FRAMES", "300"))
REPEATS = int(os.environ.get("BENCH_FACES_REPEATS", "2"))


def from_video(path: Path, source) -> AlignedFaces:
    """What the pipeline's align stage does: decode in chunks, landmarks from `source`, smoothed alignment."""
    aligner, parts = SmoothAligner(1.5), []
    for chunk in iter_chunks(path, 32):
        tracked = source.process(chunk.frames)
        done = aligner.push(chunk.frames, tracked.landmarks, tracked.valid)
        if done is not None:
            parts.append(done)
    parts.append(aligner.flush())
    return AlignedFaces.concat([p for p in parts if p is not None])


def timed(fn) -> tuple[AlignedFaces, float, float]:
    """(result, CPU s of align, CPU s of align+motion), best of REPEATS."""
    best = None
    for _ in range(REPEATS):
        c0 = time.process_time()
        out = fn()
        c1 = time.process_time()
        delta_phase(out.face48, out.valid)
        c2 = time.process_time()
        if best is None or c2 - c0 < best[2]:
            best = (out, c1 - c0, c2 - c0)
    return best


def main() -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _dlib()
    spec = VideoSpec("1-30-640x360", "mp4v", ".mp4", (640, 360), N_FRAMES, 30.0, "Train_Set",
                     [Person(ASTRONAUT, lambda u: (60 * np.sin(2 * np.pi * u), 20 * np.sin(4 * np.pi * u),
                                                   10 * np.sin(2 * np.pi * u)), 110.0, (N_FRAMES // 2, N_FRAMES // 2 + 15))])
    with tempfile.TemporaryDirectory() as tmp:
        print(f"building the layout ({N_FRAMES} frames at 640x360)", file=sys.stderr)
        e = build_affwild2_layout(tmp, [spec]).entries[spec.name]
        paths = {
            "video": lambda: from_video(e.video_path, FaceTracker()),
            "openface": lambda: from_video(e.video_path, OpenFaceLandmarks(e.openface_csv)),
            "cropped_aligned": lambda: AlignedFaces.concat(list(iter_crop_folder(e.crop_dir, e.n_frames, 64))),
        }
        res = {}
        for name, fn in paths.items():
            print(f"timing {name}", file=sys.stderr)
            res[name] = timed(fn)
    ref_align, ref_all = res["video"][1], res["video"][2]
    out = {"bench": "faces_inputs", "frames": N_FRAMES, "width": 640, "height": 360, "repeats": REPEATS,
           "threads": 1}
    for name, (faces, c_align, c_all) in res.items():
        out[name] = {"align_fps_cpu": round(N_FRAMES / c_align, 1), "align_motion_fps_cpu": round(N_FRAMES / c_all, 1),
                     "align_speedup_vs_video": round(ref_align / c_align, 2),
                     "align_motion_speedup_vs_video": round(ref_all / c_all, 2),
                     "valid": int(faces.valid.sum())}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
