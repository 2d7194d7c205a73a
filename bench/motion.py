"""ΔPhase throughput against pyrtools (same bands, frame by frame, same run) and Farneback; float16 storage error.

Prints one JSON line. Runs on 2 threads (torch.set_num_threads(2)) unless BENCH_THREADS says otherwise.
"""
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from features.motion import delta_phase, optical_flow
from pipeline.allocator import keep_freed_memory


def realistic_faces(t: int, seed: int = 0) -> np.ndarray:
    """A smooth textured 48x48 'face' drifting sub-pixel with a locally moving patch, uint8."""
    rng = np.random.default_rng(seed)
    n = 48
    f = np.fft.fftfreq(n)
    fx, fy = np.meshgrid(f, f)
    r = np.hypot(fx, fy)
    spec = np.fft.fft2(rng.standard_normal((n, n))) / np.maximum(r, 1 / n)  # 1/f: natural-image-like
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    win = np.exp(-(x ** 2 + (y - 8) ** 2) / (2 * 6.0 ** 2))
    drift = np.cumsum(rng.normal(0, 0.15, (t, 2)), axis=0)
    local = 0.8 * np.sin(np.arange(t) / 3.0)
    out = np.empty((t, n, n))
    for i in range(t):
        base = np.fft.ifft2(spec * np.exp(-2j * np.pi * (fx * drift[i, 0] + fy * drift[i, 1]))).real
        moved = np.fft.ifft2(spec * np.exp(-2j * np.pi * (fx * (drift[i, 0] + local[i]) + fy * drift[i, 1]))).real
        out[i] = (1 - win) * base + win * moved
    out = 128 + 40 * (out - out.mean()) / out.std()
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def rate(fn, frames: int, min_s: float) -> float:
    """Frames/s of fn (which handles ``frames`` frames) over at least min_s seconds, after one warm-up call."""
    fn()  # warm: masks, caches, allocator
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_s:
            return frames * n / el


def interleaved(contenders: dict, rounds: int, min_s: float) -> dict[str, list[float]]:
    """Rates of every contender, one short run each per round: this machine's speed drifts by 20% over
    seconds (a shared VM), and interleaving makes each round's ratios compare like with like."""
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, (fn, frames) in contenders.items():
            rates[name].append(rate(fn, frames, min_s))
    return rates


def main() -> None:
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    import pyrtools as pt

    # the CLI and the pipeline's workers run with the allocator tuned; BENCH_ALLOCATOR=default measures glibc's own
    allocator = os.environ.get("BENCH_ALLOCATOR", "tuned")
    tuned = allocator == "tuned" and keep_freed_memory()

    faces = realistic_faces(4096)
    result = {"bench": "motion", "threads": threads, "torch": torch.__version__,
              "allocator": "kept freed memory" if tuned else "glibc default"}

    ext = np.block([[faces[:64], faces[:64, :, ::-1]], [faces[:64, ::-1, :], faces[:64, ::-1, ::-1]]]).astype(float)

    def pyr_ref():
        for img in ext[:16]:
            pt.pyramids.SteerablePyramidFreq(img, height=2, order=1, is_complex=True)

    sizes = (64, 256, 1024, 4096)
    contenders = {"pyrtools": (pyr_ref, 16)}
    contenders.update({bs: (lambda bs=bs: delta_phase(faces[:bs], batch_size=bs), bs) for bs in sizes})
    rates = interleaved(contenders, rounds=int(os.environ.get("BENCH_ROUNDS", "5")), min_s=0.5)
    ref = rates["pyrtools"]
    result["rounds"] = len(ref)
    result["pyrtools_pyramid_fps"] = round(float(np.median(ref)), 1)
    print(f"pyrtools: {np.median(ref):.0f} frames/s", file=sys.stderr)
    for bs in sizes:
        fps = float(np.median(rates[bs]))
        result[f"dphase_fps_b{bs}"] = round(fps, 1)
        # the median over rounds of each round's own ratio: both sides saw the same machine state
        result[f"speedup_vs_pyrtools_b{bs}"] = round(float(np.median(np.divide(rates[bs], ref))), 1)
        print(f"ΔPhase batch {bs}: {fps:.0f} frames/s", file=sys.stderr)

    result["farneback_fps"] = round(rate(lambda: optical_flow(faces[:256]), 256, 1.0), 1)

    # the cache stores ΔPhase as float16: how much does that cost?
    dp = delta_phase(faces[:1024], batch_size=256)
    for k, v in dp.items():
        err = np.abs(v.astype(np.float16).astype(np.float32) - v)[1:]
        result[f"float16_max_abs_err_{k}"] = float(f"{err.max():.3g}")
        result[f"float16_max_err_over_std_{k}"] = float(f"{err.max() / v[1:].std():.3g}")
        result[f"dphase_std_{k}"] = float(f"{v[1:].std():.3g}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
