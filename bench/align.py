"""Face tracking speed: FaceTracker (detect every K frames, track between) vs dlib detection on every frame.

Both run on the same decoded frames, interleaved chunk by chunk, of a synthetic 640x360 video (the astronaut's face moving and rotating
smoothly over a textured background, encoded with OpenCV) in the same process, one thread each. Prints one
JSON line: tracker_fps, baseline_fps, speedup, landmark_disagreement (mean landmark distance between the two,
over the inter-ocular distance), frames/s per core and what was detected.
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
from synth_video import write_face_video

from features.face import AlignedFaces, FaceTracker, _dlib
from features.video import iter_chunks

N_FRAMES = int(os.environ.get("BENCH_ALIGN_FRAMES", "300"))
SIZE = (640, 360)


def run_interleaved(trackers: list[FaceTracker], chunks: list[np.ndarray]) -> list[tuple[AlignedFaces, float]]:
    """Each tracker processes each chunk in turn, so both see the same load on a shared machine."""
    parts: list[list[AlignedFaces]] = [[] for _ in trackers]
    seconds = [0.0] * len(trackers)
    for chunk in chunks:
        for k, tracker in enumerate(trackers):
            t0 = time.perf_counter()
            parts[k].append(tracker.process(chunk))
            seconds[k] += time.perf_counter() - t0
    return [(AlignedFaces.concat(p), s) for p, s in zip(parts, seconds)]


def main() -> None:
    cv2.setNumThreads(1)  # dlib's HOG and predictor are single-threaded; keep OpenCV's warps on one core too
    _dlib()  # load the models before timing
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        print(f"writing {N_FRAMES} frames at {SIZE}", file=sys.stderr)
        write_face_video(path, N_FRAMES, size=SIZE, motion="translate_rotate")
        t0 = time.perf_counter()
        chunks = [c.frames for c in iter_chunks(path, 64)]
        decode_s = time.perf_counter() - t0
    tracker = FaceTracker()
    print("tracking, and the baseline (detection on every frame), chunk by chunk", file=sys.stderr)
    (tracked, t_track), (base, t_base) = run_interleaved([tracker, FaceTracker(detect_every=1)], chunks)
    both = tracked.valid & base.valid
    iod = np.linalg.norm(base.landmarks[both, 45] - base.landmarks[both, 36], axis=1)
    dist = np.linalg.norm(tracked.landmarks[both] - base.landmarks[both], axis=2).mean(1)
    n = len(tracked)
    print(json.dumps({
        "bench": "align", "frames": n, "width": SIZE[0], "height": SIZE[1],
        "tracker_fps": round(n / t_track, 1), "baseline_fps": round(n / t_base, 1),
        "speedup": round(t_base / t_track, 2),
        "landmark_disagreement": round(float((dist / iod).mean()), 4),
        "landmark_disagreement_max": round(float((dist / iod).max()), 4),
        "tracker_valid": round(float(tracked.valid.mean()), 4), "baseline_valid": round(float(base.valid.mean()), 4),
        "tracker_detections": int(tracked.detected.sum()), "detect_every": tracker.detect_every,
        "cores_used": 1, "tracker_fps_per_core": round(n / t_track, 1),
        "decode_fps": round(n / decode_s, 1),
    }))


if __name__ == "__main__":
    main()
