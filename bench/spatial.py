"""Spatial stage speed: SpatialEncoder.encode (uint8 crops -> features) against the bare network's forward.

Prints one JSON line: images/s of encode and of model(x) on a preallocated, already mean-subtracted float
tensor in the same memory format, their ratio (goal >= 0.9), for batch sizes 8 and 32, channels_last or not.
Weights are the seeded random ones (speed does not depend on the values). Progress goes to stderr.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from features.backbone import SpatialEncoder

THREADS = 2
BATCHES = (8, 32)
REPS = 2


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    rows = []
    for channels_last in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = SpatialEncoder("random", channels_last=channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for bs in BATCHES:
            enc.batch_size = bs
            faces = rng.integers(0, 256, (bs, 224, 224, 3), dtype=np.uint8)
            x = (torch.rand(bs, 3, 224, 224) * 255 - 128).contiguous(memory_format=fmt)

            def bare(x=x, enc=enc):
                with torch.inference_mode():
                    enc.model(x)

            def encode(f=faces, enc=enc):
                enc.encode(f)

            bare(), encode()  # warm-up: oneDNN picks its kernels for this shape
            # Interleaved, best of REPS: other processes' load hits both alike and the minimum is least noisy.
            t_bare, t_enc = zip(*((seconds(bare), seconds(encode)) for _ in range(REPS)))
            row = {"batch": bs, "channels_last": channels_last, "encode_img_s": round(bs / min(t_enc), 2),
                   "bare_img_s": round(bs / min(t_bare), 2), "ratio": round(min(t_bare) / min(t_enc), 3)}
            print(row, file=sys.stderr, flush=True)
            rows.append(row)
    by = {(r["batch"], r["channels_last"]): r for r in rows}
    out = {
        "bench": "spatial",
        "threads": THREADS,
        "device": "cpu",
        "torch": torch.__version__,
        "rows": rows,
        "ratio_min_channels_last": min(r["ratio"] for r in rows if r["channels_last"]),
        "channels_last_speedup": {str(bs): round(by[bs, True]["bare_img_s"] / by[bs, False]["bare_img_s"], 3)
                                  for bs in BATCHES},
        "goal": "ratio >= 0.9",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
