"""Face tracking speed: FaceTracker (detect every K frames, track between) vs dlib detection on every frame.

Both run on the same decoded frames, interleaved chunk by chunk, of a synthetic 640x360 video (the astronaut's face moving and rotating
smoothly over a textured background, encoded with OpenCV) in the same process, one thread each. Prints one
JSON line: tracker_fps, baseline_fps, speedup (wall clock), the same from CPU time (*_cpu; steadier on a shared
machine), landmark_disagreement (mean landmark distance between the two,
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


def run_interleaved(trackers: list[FaceTracker], chunks: list[np.ndarray]) -> list[tuple[AlignedFaces, float, float]]:
    """Each tracker processes each chunk in turn, so both see the same load on a shared machine.

    Returns (result, wall seconds, CPU seconds of this process): on a loaded machine the CPU time is the
    steadier measure of the work done, since the wall clock also counts time spent waiting for a core.
    """
    parts: list[list[AlignedFaces]] = [[] for _ in trackers]
    wall = [0.0] * len(trackers)
    cpu = [0.0] * len(trackers)
    for chunk in chunks:
        for k, tracker in enumerate(trackers):
            t0, c0 = time.perf_counter(), time.process_time()
            parts[k].append(tracker.process(chunk))
            wall[k] += time.perf_counter() - t0
            cpu[k] += time.process_time() - c0
    return [(AlignedFaces.concat(p), w, c) for p, w, c in zip(parts, wall, cpu)]


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
    (tracked, t_track, c_track), (base, t_base, c_base) = run_interleaved([tracker, FaceTracker(detect_every=1)], chunks)
    both = tracked.valid & base.valid
    iod = np.linalg.norm(base.landmarks[both, 45] - base.landmarks[both, 36], axis=1)
    dist = np.linalg.norm(tracked.landmarks[both] - base.landmarks[both], axis=2).mean(1)
    n = len(tracked)
    print(json.dumps({
        "bench": "align", "frames": n, "width": SIZE[0], "height": SIZE[1],
        "tracker_fps": round(n / t_track, 1), "baseline_fps": round(n / t_base, 1),
        "speedup": round(t_base / t_track, 2),
        "tracker_fps_cpu": round(n / c_track, 1), "baseline_fps_cpu": round(n / c_base, 1),
        "speedup_cpu": round(c_base / c_track, 2),
        "landmark_disagreement": round(float((dist / iod).mean()), 4),
        "landmark_disagreement_max": round(float((dist / iod).max()), 4),
        "tracker_valid": round(float(tracked.valid.mean()), 4), "baseline_valid": round(float(base.valid.mean()), 4),
        "tracker_detections": int(tracked.detected.sum()), "detect_every": tracker.detect_every,
        "cores_used": 1, "tracker_fps_per_core": round(n / c_track, 1),
        "decode_fps": round(n / decode_s, 1),
    }))


if __name__ == "__main__":
    main()
