"""What marking arrays made before chunk tracking (pipeline/untracked.py) adds to planning a `features` run.

`plan` now looks, in each done group, for arrays without store.EVERY_CHUNK and stats each of their chunk files (one
stat per chunk, stopping at the first absent one); `graph.run` then marks those found whole, once. Timed in the same
process against what planning already does for every done group, store.unusable_arrays (which stats every chunk of
the arrays that are marked): BENCH_OLD_CHUNKS_GROUPS groups of BENCH_OLD_CHUNKS_FRAMES frames (18,000: 10 min at
30 fps) holding the arrays of a default `features` run (valid, landmarks, face48, resnet50, dphase_s0, dphase_s1,
labels), every chunk file present, made without the mark; best of BENCH_OLD_CHUNKS_REPEATS, less the time to open
the groups (plan has them open already). The files were just
written, so their metadata is in the page cache: this is the CPU and syscall cost; a cold network disk adds a metadata
round trip per stat (the stats per group are printed).

Prints one JSON line: milliseconds per group for the check of unmarked groups, the one-time marking, the check once
marked (its cost on every later run) and the reference; the ratio of the check to the reference; and the seconds for
Aff-Wild2's 548 videos, both as 548 videos of this length and for its real ~2.8 million frames.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import numpy as np
import zarr

from pipeline import store, untracked

GROUPS = int(os.environ.get("BENCH_OLD_CHUNKS_GROUPS", "12"))
FRAMES = int(os.environ.get("BENCH_OLD_CHUNKS_FRAMES", "18000"))
REPEATS = int(os.environ.get("BENCH_OLD_CHUNKS_REPEATS", "5"))
NAMES = ("valid", "landmarks", "face48", "resnet50", "dphase_s0", "dphase_s1", "labels")
AFFWILD2_VIDEOS, AFFWILD2_FRAMES = 548, 2_800_000


def make_old_group(cache: Path, video: str) -> None:
    """A done group of FRAMES frames whose arrays are as earlier versions made them (no mark), every chunk written."""
    path = store.video_dir(cache, "bench", video)
    g = zarr.open_group(path, mode="w")
    for name in NAMES:
        arr = store.create_array(g, name, FRAMES)
        dtype, shape = store.SCHEMA[name]
        block = np.ones((store.CHUNK_T, *shape), dtype)   # not fill value: a file per chunk, as a face gives
        for lo in range(0, FRAMES, store.CHUNK_T):
            arr[lo:lo + store.CHUNK_T] = block[:min(store.CHUNK_T, FRAMES - lo)]
        del arr.attrs[store.EVERY_CHUNK]
    g.attrs.update({"status": "done", "n_frames": FRAMES, "fingerprints": {n: "x" for n in NAMES}})


def best(fn, videos, cache) -> float:
    """Best total seconds over REPEATS of fn on every group, each group opened afresh as plan opens it."""
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for v in videos:
            fn(store.open_video(cache, "bench", v))
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        videos = [f"v{i:03d}" for i in range(GROUPS)]
        for v in videos:
            make_old_group(cache, v)
        g0 = store.open_video(cache, "bench", videos[0])
        chunks = -(-FRAMES // store.CHUNK_T)
        assert all(untracked.untracked_arrays(g0).values()) and len(untracked.untracked_arrays(g0)) == len(NAMES)
        t_open = best(lambda g: None, videos, cache)                # opening the group: plan has done it already
        t_ref_before = best(store.unusable_arrays, videos, cache) - t_open   # unmarked: no stat in it yet
        t_check = best(untracked.untracked_arrays, videos, cache) - t_open
        t0 = time.perf_counter()
        for v in videos:
            untracked.mark(store.open_video(cache, "bench", v, mode="r+"), NAMES)
        t_mark = time.perf_counter() - t0
        assert not untracked.untracked_arrays(g0)
        t_after = best(untracked.untracked_arrays, videos, cache) - t_open
        t_ref = best(store.unusable_arrays, videos, cache) - t_open   # marked: one stat per chunk, every run
    ms = lambda t: round(1e3 * t / GROUPS, 2)   # noqa: E731
    print(json.dumps({
        "groups": GROUPS, "frames_per_group": FRAMES, "arrays_per_group": len(NAMES),
        "stats_per_group": len(NAMES) * chunks, "repeats": REPEATS, "open_group_ms_not_counted": ms(t_open),
        "check_unmarked_ms_per_group": ms(t_check),
        "mark_once_ms_per_group": ms(t_mark),
        "check_once_marked_ms_per_group": ms(t_after),
        "reference_unusable_arrays_marked_ms_per_group": ms(t_ref),
        "reference_unusable_arrays_unmarked_ms_per_group": ms(t_ref_before),
        "ratio_check_to_reference_marked": round(t_check / t_ref, 2),
        # the run that marks: the check (one stat per chunk: scales with frames), then the marking (per array)
        "affwild2_548_videos_of_this_length_s": round((t_check + t_mark) / GROUPS * AFFWILD2_VIDEOS, 1),
        "affwild2_real_frames_s": round(t_check / GROUPS / FRAMES * AFFWILD2_FRAMES
                                        + t_mark / GROUPS * AFFWILD2_VIDEOS, 1),
    }))


if __name__ == "__main__":
    main()
