"""ΔPhase throughput against pyrtools (same bands, frame by frame, same rounds) and Farneback; float16 storage error.

ΔPhase is measured twice, each in a fresh process: "library", as any caller of ``features.motion.delta_phase``
(glibc's malloc untuned), and "cli", with ``pipeline.allocator.keep_freed_memory()`` as the CLI and the
pipeline's workers run it; each reports frames/s per batch size for the default ΔPhase ("mimamo_b*"), and at batch
256 for the defaults before issue 17 ("v1_b256": no affine fit, no window, sigma 2), the paper variant and the
default without its rigid-motion removal ("norigid_b256": rigid="none", the affine fit's whole cost), and
the median over rounds of each round's ratio to pyrtools (this VM's speed drifts ~20%: interleaved rounds compare
like with like). "memory" is a third fresh process: the peak RSS one 256-frame call adds, and what stays held.
Prints one JSON line. Runs on 2 threads (torch.set_num_threads(2)) unless BENCH_THREADS says otherwise;
BENCH_ROUNDS sets the rounds (5). ``BENCH_ALLOCATOR=default|tuned`` measures only that one, in this process.
"""
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from features.motion import MOTION_V1, MotionConfig, delta_phase, optical_flow
from features.scratch import thread_scratch
from pipeline.allocator import keep_freed_memory

SIZES = (64, 256, 1024, 4096)


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


def speed(allocator: str, threads: int) -> dict:
    """Rates against pyrtools in interleaved rounds, in this process, with malloc "tuned" or left as "default"."""
    import pyrtools as pt

    tuned = allocator == "tuned" and keep_freed_memory()
    faces = realistic_faces(4096)
    result = {"allocator": "kept freed memory (pipeline/allocator.py)" if tuned else "glibc default"}
    ext = np.block([[faces[:64], faces[:64, :, ::-1]], [faces[:64, ::-1, :], faces[:64, ::-1, ::-1]]]).astype(float)

    def pyr_ref():
        for img in ext[:16]:
            pt.pyramids.SteerablePyramidFreq(img, height=2, order=1, is_complex=True)

    contenders = {"pyrtools": (pyr_ref, 16)}
    contenders.update({f"b{bs}": (lambda bs=bs: delta_phase(faces[:bs], batch_size=bs), bs) for bs in SIZES})
    contenders["v1_b256"] = (lambda: delta_phase(faces[:256], config=MotionConfig(**MOTION_V1)), 256)
    contenders["paper_b256"] = (lambda: delta_phase(faces[:256], variant="paper"), 256)
    # the default without its rigid-motion removal: what the affine fit (and the local frequencies it needs) costs
    contenders["norigid_b256"] = (lambda: delta_phase(faces[:256], config=MotionConfig(rigid="none")), 256)
    rates = interleaved(contenders, rounds=int(os.environ.get("BENCH_ROUNDS", "5")), min_s=0.5)
    ref = rates.pop("pyrtools")
    result["rounds"] = len(ref)
    result["pyrtools_pyramid_fps"] = round(float(np.median(ref)), 1)
    print(f"[{allocator}] pyrtools: {np.median(ref):.0f} frames/s", file=sys.stderr)
    for name, r in rates.items():
        label = name if name.startswith(("paper", "v1", "norigid")) else f"mimamo_{name}"
        result[f"{label}_fps"] = round(float(np.median(r)), 1)
        # the median over rounds of each round's own ratio: both sides saw the same machine state
        result[f"{label}_vs_pyrtools"] = round(float(np.median(np.divide(r, ref))), 1)
        print(f"[{allocator}] ΔPhase {label}: {np.median(r):.0f} frames/s, "
              f"{result[f'{label}_vs_pyrtools']}x pyrtools", file=sys.stderr)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["scratch_mb"] = round(thread_scratch().nbytes() / 2 ** 20, 1)
    return result


def memory() -> dict:
    """Peak RSS that one call on 256 frames (batch 256) adds to a fresh process, and RSS held after it returns."""

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    faces = realistic_faces(256)
    base_peak, base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss_mb()
    for _ in range(3):
        delta_phase(faces)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"frames": 256, "peak_rss_added_mb": round(peak - max(base_peak, base), 1),
            "rss_held_after_mb": round(rss_mb() - base, 1), "scratch_mb": round(thread_scratch().nbytes() / 2 ** 20, 1)}


def storage() -> dict:
    """Farneback's rate and the cost of storing ΔPhase as float16 (the cache's dtype)."""
    faces = realistic_faces(1024)
    result = {"farneback_fps": round(rate(lambda: optical_flow(faces[:256]), 256, 1.0), 1)}
    dp = delta_phase(faces, batch_size=256)
    for k, v in dp.items():
        err = np.abs(v.astype(np.float16).astype(np.float32) - v)[1:]
        result[f"float16_max_abs_err_{k}"] = float(f"{err.max():.3g}")
        result[f"float16_max_err_over_std_{k}"] = float(f"{err.max() / v[1:].std():.3g}")
        result[f"dphase_std_{k}"] = float(f"{v[1:].std():.3g}")
    return result


def child(part: str) -> dict:
    """Run one part in a fresh process: the allocator setting is per process and cannot be undone."""
    out = subprocess.run([sys.executable, __file__, "--part", part], check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    if sys.argv[1:2] == ["--part"]:
        part = sys.argv[2]
        print(json.dumps(memory() if part == "memory" else storage() if part == "storage" else speed(part, threads)))
        return
    result = {"bench": "motion", "threads": threads, "torch": torch.__version__}
    if os.environ.get("BENCH_ALLOCATOR"):  # one allocator setting, in this process (as before)
        result[os.environ["BENCH_ALLOCATOR"]] = speed(os.environ["BENCH_ALLOCATOR"], threads)
    else:
        result["library"] = child("default")
        result["cli"] = child("tuned")
        result["memory"] = child("memory")
    result.update(child("storage"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
