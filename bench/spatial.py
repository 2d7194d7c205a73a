"""Spatial stage speed: SpatialEncoder.encode (uint8 crops -> features) against the bare network's forward.

Prints one JSON line: images/s of encode and of model(x) on a preallocated, already mean-subtracted float
tensor in the same memory format, their ratio (goal >= 0.9), for batch sizes 8 and 32, channels_last or not;
and the forward of the network with BatchNorm not folded, to show what folding buys.
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


def encoder(channels_last: bool, fold_bn: bool) -> SpatialEncoder:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-weights warning
        return SpatialEncoder("random", channels_last=channels_last, fold_bn=fold_bn)


def measure(enc: SpatialEncoder, bs: int, rng: np.random.Generator) -> dict:
    """images/s of enc.encode on uint8 crops and of enc.net on a preallocated float tensor, same batch."""
    enc.batch_size = bs
    faces = rng.integers(0, 256, (bs, 224, 224, 3), dtype=np.uint8)
    fmt = torch.channels_last if enc.channels_last else torch.contiguous_format
    x = (torch.rand(bs, 3, 224, 224) * 255 - 128).contiguous(memory_format=fmt)

    def bare():
        with torch.inference_mode():
            enc.net(x)

    def encode():
        enc.encode(faces)

    def prep():
        with torch.inference_mode():
            enc.preprocess(torch.from_numpy(faces))

    bare(), encode()  # warm-up: oneDNN picks its kernels for this shape
    # Interleaved, best of REPS: other processes' load hits both alike and the minimum is least noisy.
    t_bare, t_enc = zip(*((seconds(bare), seconds(encode)) for _ in range(REPS)))
    # encode's own work (uint8 -> float, mean, layout), alone: less noisy than the ratio of two long timings.
    t_prep = min(seconds(prep) for _ in range(5))
    row = {"batch": bs, "channels_last": enc.channels_last, "encode_img_s": round(bs / min(t_enc), 2),
           "bare_img_s": round(bs / min(t_bare), 2), "ratio": round(min(t_bare) / min(t_enc), 3),
           "preprocess_ms_per_img": round(1e3 * t_prep / bs, 3),
           "preprocess_share_of_forward": round(t_prep / min(t_bare), 4)}
    print(row, file=sys.stderr, flush=True)
    return row


def main() -> None:
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    rows = []
    for channels_last in (True, False):
        enc = encoder(channels_last, fold_bn=True)
        rows += [measure(enc, bs, rng) for bs in BATCHES]
    by = {(r["batch"], r["channels_last"]): r for r in rows}
    # The published network as loaded (BN not folded), channels_last, smallest batch: what folding buys.
    unfolded = measure(encoder(True, fold_bn=False), BATCHES[0], rng)
    out = {
        "bench": "spatial",
        "threads": THREADS,
        "device": "cpu",
        "torch": torch.__version__,
        "rows": rows,
        "ratio_min_channels_last": min(r["ratio"] for r in rows if r["channels_last"]),
        "channels_last_speedup": {str(bs): round(by[bs, True]["bare_img_s"] / by[bs, False]["bare_img_s"], 3)
                                  for bs in BATCHES},
        "unfolded_bn_bare_img_s": unfolded["bare_img_s"],
        "encode_vs_unfolded_bare": round(by[BATCHES[0], True]["encode_img_s"] / unfolded["bare_img_s"], 3),
        "goal": "ratio >= 0.9 (encode vs the bare forward of the same network)",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
