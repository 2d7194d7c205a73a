"""End-to-end feature extraction: frames/s with 1 and 2 workers on the demo, peak RSS per worker, cache size.

Prints one JSON line. The long-video part streams a 10-minute 640x360 video (the demo's first clip looped) through
the align+motion stages and a 1-minute one through all stages, in fresh worker processes, to show that a worker's
peak RSS does not grow with the video's length (the spatial stage's memory is one batch, whatever the length).
Usage: python bench/pipeline.py [--demo data/demo] [--videos 8] [--long-minutes 10]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.simplefilter("ignore")

from pipeline import extract, graph  # noqa: E402
from pipeline.manifest import VideoEntry, get_dataset, list_videos  # noqa: E402


def run(entries, cache, workers, settings) -> tuple[float, graph.Summary]:
    t0 = time.perf_counter()
    summary = graph.run(entries, cache, "bench", settings, workers=workers, progress=False, echo=lambda *a: None)
    return time.perf_counter() - t0, summary


def loop_video(src: Path, dst: Path, minutes: float) -> int:
    """Write `minutes` of video by looping `src` (MJPG, so encoding is cheap and frames stay sharp)."""
    cap = cv2.VideoCapture(str(src))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    n = int(minutes * 60 * fps)
    for i in range(n):
        # play forwards then backwards so the loop has no jump (a jump is a spurious re-detection)
        k = i % (2 * len(frames) - 2)
        out.write(frames[k if k < len(frames) else 2 * len(frames) - 2 - k])
    out.release()
    return n


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--demo", default="data/demo")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--long-minutes", type=float, default=10.0)
    args = ap.parse_args()
    entries = list_videos(get_dataset("demo", args.demo))[:args.videos]
    frames = sum(int(cv2.VideoCapture(str(e.path)).get(cv2.CAP_PROP_FRAME_COUNT)) for e in entries)
    s = extract.Settings(weights="random")
    tmp = Path(tempfile.mkdtemp(prefix="mimamo-bench-"))
    out = {"bench": "pipeline", "videos": len(entries), "frames": frames}
    try:
        for w in (1, 2):
            sec, summ = run(entries, tmp / f"w{w}", w, s)
            assert not summ.failed, summ.table()
            out[f"fps_{w}_worker"] = round(frames / sec, 2)
            out[f"seconds_{w}_worker"] = round(sec, 1)
            out[f"peak_rss_mb_{w}_worker"] = round(max(r["peak_rss_mb"] for r in summ.rows), 1)
        out["scaling_2_over_1"] = round(out["fps_2_worker"] / out["fps_1_worker"], 3)
        out["cache_bytes_per_frame"] = round(dir_bytes(tmp / "w2" / "bench") / frames, 1)
        out["cache_kib_per_frame"] = round(out["cache_bytes_per_frame"] / 1024, 2)
        for minutes, stages in ((1.0, ("align", "motion", "spatial")), (1.0, ("align", "motion")),
                                (args.long_minutes, ("align", "motion"))):
            video = tmp / f"long_{minutes:g}.avi"
            n = loop_video(entries[0].path, video, minutes)
            sec, summ = run([VideoEntry(video.stem, video, "bench")], tmp / f"long{minutes:g}{len(stages)}", 1,
                            extract.Settings(stages=stages, weights="random"))
            assert not summ.failed, summ.table()
            key = f"{minutes:g}min_{'+'.join(stages)}"
            out[f"peak_rss_mb_{key}"] = round(summ.rows[0]["peak_rss_mb"], 1)
            out[f"fps_{key}"] = round(n / sec, 1)
            video.unlink()
        out["rss_ratio_long_over_1min"] = round(out[f"peak_rss_mb_{args.long_minutes:g}min_align+motion"]
                                                / out["peak_rss_mb_1min_align+motion"], 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
