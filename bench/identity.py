"""What identifying sources by contents (pipeline/sources.py) adds to planning a `features` run.

`plan` compares each video's group with its file on every run. Before, with one stat ([size, int(mtime)]); now with
the size and the sha256 of the file's first and last MiB. Timed in the same process: BENCH_IDENTITY_VIDEOS files of
BENCH_IDENTITY_MB MB each (random bytes: the digest never decodes), the old stat identity against the new one for all
of them, each a fresh process-level memo, best of BENCH_IDENTITY_REPEATS. The files were just written, so they are
in the page cache: this is the CPU and syscall cost; a cold network disk adds 2 MiB of reads per video.

OpenFace CSVs are hashed whole: an OpenFace 2.0 FeatureExtraction CSV in its real format (tests/openface_csv.py, every
column) of BENCH_IDENTITY_CSV_FRAMES frames is hashed, giving bytes per frame and MB/s, hence the seconds the CSVs of
Aff-Wild2 (about 2.8 million frames) cost per run, warm.

Prints one JSON line.
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

import numpy as np
from openface_csv import write_openface_csv

from pipeline import sources

N_VIDEOS = int(os.environ.get("BENCH_IDENTITY_VIDEOS", "200"))
MB = float(os.environ.get("BENCH_IDENTITY_MB", "20"))
REPEATS = int(os.environ.get("BENCH_IDENTITY_REPEATS", "5"))
CSV_FRAMES = int(os.environ.get("BENCH_IDENTITY_CSV_FRAMES", "3000"))
AFFWILD2_FRAMES = 2_800_000


def old_identity(path: Path) -> list:
    """What main's extract.source_identity was."""
    st = path.stat()
    return [st.st_size, int(st.st_mtime)]


def best(fn, paths) -> float:
    times = []
    for _ in range(REPEATS):
        sources._MEMO.clear()   # each repeat as a fresh process finds it
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        block = rng.integers(0, 256, int(MB * 1e6), dtype=np.uint8).tobytes()
        for i in range(N_VIDEOS):
            p = Path(tmp) / f"v{i:04d}.mp4"
            p.write_bytes(block[i:] + block[:i])   # distinct files
            paths.append(p)
        t_old, t_new = best(old_identity, paths), best(sources.video_identity, paths)
        for p in paths:
            p.unlink()
        csv = Path(tmp) / "a.csv"
        lm = np.tile(np.linspace(50, 150, 136).reshape(1, 68, 2), (CSV_FRAMES, 1, 1)) + rng.normal(0, 1, (CSV_FRAMES, 68, 2))
        write_openface_csv(csv, [(lm, np.ones(CSV_FRAMES, bool))])
        t_csv = best(sources.file_identity, [csv])
        size = csv.stat().st_size
    per_frame = size / CSV_FRAMES
    print(json.dumps({
        "videos": N_VIDEOS, "video_mb": MB, "repeats": REPEATS,
        "old_stat_ms_per_video": round(1e3 * t_old / N_VIDEOS, 4),
        "head_tail_ms_per_video": round(1e3 * t_new / N_VIDEOS, 3),
        "ratio_new_to_old": round(t_new / t_old, 1),
        "plan_seconds_added_for_affwild2_548_videos": round((t_new - t_old) / N_VIDEOS * 548, 2),
        "openface_csv_bytes_per_frame": round(per_frame),
        "openface_csv_full_sha256_mb_per_s": round(size / 1e6 / t_csv),
        "affwild2_csvs_gb": round(per_frame * AFFWILD2_FRAMES / 1e9, 1),
        "affwild2_csvs_full_hash_seconds_warm": round(per_frame * AFFWILD2_FRAMES / (size / t_csv), 1),
    }))


if __name__ == "__main__":
    main()
