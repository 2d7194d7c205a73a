"""Peak memory of streaming decode + face tracking stays flat with video length (1 minute vs 10 minutes).

Each length runs in a fresh child process (so ru_maxrss is that run's own peak; the current RSS is also
sampled after every chunk, since loading the models can set ru_maxrss higher than the streaming ever goes): decode a 640x360 30 fps video
in 64-frame chunks and track+align every frame, keeping only per-frame counts. The videos repeat a 10 s
synthetic clip (astronaut face moving and rotating) so they encode quickly. Prints one JSON line.
Set BENCH_MEMORY_DETECT_EVERY to track with a larger K if the 10-minute run is too slow on a machine.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SIZE = (640, 360)
FPS = 30.0
DETECT_EVERY = int(os.environ.get("BENCH_MEMORY_DETECT_EVERY", "30"))


def child(path: str) -> None:
    """Stream one video through decode + tracking; print peak RSS (MiB) and counts as JSON."""
    import cv2
    import psutil

    from features.face import FaceTracker, _dlib
    from features.video import iter_chunks

    cv2.setNumThreads(1)
    _dlib()  # the models' memory counts in the baseline, not in the streaming
    tracker = FaceTracker(detect_every=DETECT_EVERY)
    proc = psutil.Process()
    # ru_maxrss includes the transient peak of loading the models, which can hide the streaming's own
    # memory: the current RSS, sampled after every chunk, is what grows if anything accumulates.
    rss_start = proc.memory_info().rss / 2**20
    rss_max = rss_start
    n = n_valid = 0
    t0 = time.perf_counter()
    for chunk in iter_chunks(path, 64):
        out = tracker.process(chunk.frames)
        n += len(out)
        n_valid += int(out.valid.sum())
        rss_max = max(rss_max, proc.memory_info().rss / 2**20)
    print(json.dumps({"frames": n, "valid": n_valid, "seconds": time.perf_counter() - t0,
                      "rss_before_mib": rss_start, "rss_max_streaming_mib": rss_max,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def write_long(path: Path, base: list, n_frames: int) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for t in range(n_frames):
        writer.write(base[t % len(base)])
    writer.release()


def main() -> None:
    import cv2
    from synth_video import write_face_video

    figures = {"bench": "align_memory", "width": SIZE[0], "height": SIZE[1], "fps": FPS, "chunk": 64,
               "detect_every": DETECT_EVERY}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        write_face_video(clip, int(10 * FPS), size=SIZE, fps=FPS, motion="translate_rotate")
        cap = cv2.VideoCapture(str(clip))
        base = []
        while (ok_frame := cap.read())[0]:
            base.append(ok_frame[1])
        cap.release()
        for minutes in (1, 10):
            path = Path(tmp) / f"{minutes}min.mp4"
            print(f"writing {minutes} min", file=sys.stderr)
            write_long(path, base, int(minutes * 60 * FPS))
            print(f"decode + track {minutes} min", file=sys.stderr)
            res = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True,
                                 capture_output=True, text=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            figures[f"frames_{minutes}min"] = r["frames"]
            figures[f"valid_{minutes}min"] = r["valid"]
            figures[f"fps_{minutes}min"] = round(r["frames"] / r["seconds"], 1)
            figures[f"rss_after_load_{minutes}min_mib"] = round(r["rss_before_mib"], 1)
            figures[f"max_rss_streaming_{minutes}min_mib"] = round(r["rss_max_streaming_mib"], 1)
            figures[f"peak_rss_{minutes}min_mib"] = round(r["peak_rss_mib"], 1)
            path.unlink()
    figures["peak_ratio_10_over_1"] = round(figures["peak_rss_10min_mib"] / figures["peak_rss_1min_mib"], 3)
    figures["streaming_ratio_10_over_1"] = round(figures["max_rss_streaming_10min_mib"]
                                                 / figures["max_rss_streaming_1min_mib"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
