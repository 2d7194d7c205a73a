"""Two-person videos: FaceTracker with side selection (left, right) against the largest face, same frames, same run.

Scenes (tests/people_video.py, 480x240, OpenCV-encoded): `leaves` is `two_people`: the astronaut (left) is away for
25% of the video and Grace Hopper (right) for 12.5%; `both` is the same motion with both always in view, so the
cost of side selection itself shows apart from the searching a lost face costs. The trackers process each
64-frame chunk in turn (same load on a shared machine), one thread. Prints one JSON line: per scene and side,
frames/s (wall and CPU), the ratio to `largest` (CPU time, the steadier on a shared machine), full detections,
and the landmark error against the known truth (px, mean over the 68 points; median, p95, max over frames) for
the person that side must follow, with how many frames are valid where the person is away (must be 0).
"""
from __future__ import annotations

import dataclasses
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
from people_video import portrait_landmarks, two_people, write_people_video

from features.face import AlignedFaces, FaceTracker, _dlib
from features.video import iter_chunks

N_FRAMES = int(os.environ.get("BENCH_TWO_PERSON_FRAMES", "240"))
SIDES = ("largest", "left", "right")


def run(chunks: list[np.ndarray]) -> dict[str, tuple[AlignedFaces, float, float]]:
    """Each side's tracker on each chunk in turn: (result, wall s, CPU s)."""
    trackers = {side: FaceTracker(side=side) for side in SIDES}
    parts: dict[str, list] = {side: [] for side in SIDES}
    wall = dict.fromkeys(SIDES, 0.0)
    cpu = dict.fromkeys(SIDES, 0.0)
    for chunk in chunks:
        for side, tracker in trackers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            parts[side].append(tracker.process(chunk))
            wall[side] += time.perf_counter() - t0
            cpu[side] += time.process_time() - c0
    return {side: (AlignedFaces.concat(parts[side]), wall[side], cpu[side]) for side in SIDES}


def errors(out: AlignedFaces, person, truth) -> dict:
    lm = portrait_landmarks(person.photo)
    ok = out.valid & truth.present
    err = np.array([np.linalg.norm(out.landmarks[t] - truth.map_points(lm, t), axis=1).mean() for t in np.flatnonzero(ok)])
    return {"err_median_px": round(float(np.median(err)), 3), "err_p95_px": round(float(np.percentile(err, 95)), 3),
            "err_max_px": round(float(err.max()), 3), "valid_while_away": int((out.valid & ~truth.present).sum()),
            "missed_while_present": int((~out.valid & truth.present).sum())}


def main() -> None:
    cv2.setNumThreads(1)
    _dlib()
    result = {"bench": "faces_two_person", "frames": N_FRAMES, "width": 480, "height": 240, "scenes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for scene in ("leaves", "both"):
            people = two_people(N_FRAMES)
            if scene == "both":
                people = [dataclasses.replace(p, absent=None) for p in people]
            path = Path(tmp) / f"{scene}.mp4"
            truths = write_people_video(path, N_FRAMES, people)
            chunks = [c.frames for c in iter_chunks(path, 64)]
            print(f"{scene}: tracking {N_FRAMES} frames from each side", file=sys.stderr)
            res = run(chunks)
            c_ref = res["largest"][2]
            rows = {}
            for side, (out, wall, cpu) in res.items():
                row = {"fps": round(N_FRAMES / wall, 1), "fps_cpu": round(N_FRAMES / cpu, 1),
                       "ratio_to_largest_cpu": round(c_ref / cpu, 3), "detections": int(out.detected.sum())}
                if side != "largest":
                    k = 0 if side == "left" else 1
                    row.update(errors(out, people[k], truths[k]))
                rows[side] = row
            result["scenes"][scene] = rows
    print(json.dumps(result))


if __name__ == "__main__":
    main()
