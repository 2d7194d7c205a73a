"""What one GPU node does: ResNet50, ΔPhase, `features --device cuda` with several workers, and the trainer.

Prints one JSON line (progress on stderr). Sections (``--sections``, default all):
  ceiling   bf16, fp32 (IEEE) and tf32 matrix products of 8192^3: the device's measured TFLOP/s
  resnet50  images/s of the network alone (input already on the GPU, CUDA events) at batch 64 and 256, fp32 (IEEE
            convolutions, what `features` runs) and bf16 autocast, channels_last, with the TFLOP/s that makes; and
            SpatialEncoder.encode end to end (uint8 crops in, float32 features out); bf16's error against fp32
  dphase    delta_phase frames/s from uint8 faces in host memory to float32 maps in host memory (as `features` calls
            it), both variants, batch 256 and 1024; one CPU thread beside it for the ratio
  features  `cli.py features --device cuda` on copies of demo videos, 2 videos per worker, 1/4/8/16 workers sharing
            the GPU: frames/s (wall clock, and per worker while busy), GPU memory per worker (nvidia-smi, MiB); the same
            with --stages align (the CPU part alone) and with --device cpu (one video per worker) at the largest
            worker count; the align stage on the demo video upscaled to 1280x720, one worker; Aff-Wild2-style
            organiser crops (--faces cropped_aligned: no decoding, detection or alignment) at the largest count
  trainer   paper defaults (batch 16, width 64, window 12, 64 frames): loader sequences/s (shuffled, pinned, 2 and 8
            workers) from a synthetic cache, training steps/s with the loader and with the batch already loaded
``--device cpu --quick`` runs it all small on a machine without CUDA (a check of the script, not a measurement).

    python bench/gpu.py [--sections ceiling,resnet50,dphase,features,trainer] [--workers 1,4,8,16]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # as the trainer sets it, before CUDA starts
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from features.backbone import SpatialEncoder, ieee_fp32_convolutions  # noqa: E402
from features.motion import delta_phase  # noqa: E402

SECTIONS = ("ceiling", "resnet50", "dphase", "features", "trainer")


def say(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def timed(fn, dev: torch.device, reps: int, warmup: int = 2) -> float:
    """Median seconds of fn() over reps (CUDA events on a GPU, after warm-up)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def ceiling(dev: torch.device, quick: bool) -> dict:
    n = 1024 if quick else 8192
    out = {}
    for name, dtype, prec in (("bf16", torch.bfloat16, None), ("fp32_ieee", torch.float32, "ieee"),
                              ("tf32", torch.float32, "tf32")):
        if dev.type == "cpu" and name != "fp32_ieee":
            continue
        a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))   # random data, never zeros
        if prec:
            torch.backends.cuda.matmul.fp32_precision = prec
        out[f"matmul_{name}_tflops"] = round(2 * n ** 3 / timed(lambda a=a, b=b: a @ b, dev, 3 if quick else 10) / 1e12, 1)
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        say(f"matmul {name}: {out[f'matmul_{name}_tflops']} TFLOP/s")
    return out


def resnet_flops() -> float:
    """Multiply-adds x 2 of one 224x224 image through the network (convolutions and the fully connected none)."""
    enc = SpatialEncoder("random")
    macs = []

    def hook(m, i, o):
        macs.append(o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
    hs = [m.register_forward_hook(hook) for m in enc.net.modules() if isinstance(m, torch.nn.Conv2d)]
    enc.encode(np.zeros((1, 224, 224, 3), np.uint8))
    for h in hs:
        h.remove()
    return 2.0 * sum(macs)


def resnet50(dev: torch.device, quick: bool) -> dict:
    flops = resnet_flops()
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (256, 224, 224, 3), dtype=np.uint8)
    out = {"resnet50_gflop_per_image": round(flops / 1e9, 2)}
    feats = {}
    for amp in (None, "bf16"):
        if amp and dev.type != "cuda":
            continue
        tag = amp or "fp32"
        for bs in (64, 256) if not quick else (8,):
            enc = SpatialEncoder("random", device=dev, amp=amp, batch_size=bs)
            x = enc.preprocess(torch.from_numpy(crops[:bs]))

            def net(enc=enc, x=x, amp=amp):
                with torch.inference_mode(), ieee_fp32_convolutions():
                    if amp:
                        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                            return enc.net(x)
                    return enc.net(x)
            t = timed(net, dev, 3 if quick else 20, warmup=3)
            out[f"resnet50_{tag}_b{bs}_images_per_s"] = round(bs / t, 1)
            out[f"resnet50_{tag}_b{bs}_tflops"] = round(bs * flops / t / 1e12, 1)
            say(f"resnet50 {tag} batch {bs}: {bs / t:.0f} images/s, {bs * flops / t / 1e12:.1f} TFLOP/s")
        n = 16 if quick else 1024
        big = crops[np.arange(n) % len(crops)]
        enc.encode(big[:enc.batch_size])
        t0 = time.perf_counter()
        feats[tag] = enc.encode(big)
        out[f"resnet50_{tag}_encode_images_per_s"] = round(n / (time.perf_counter() - t0), 1)
        say(f"resnet50 {tag} encode(): {out[f'resnet50_{tag}_encode_images_per_s']} images/s (batch {enc.batch_size})")
    if "bf16" in feats:
        a, b = feats["bf16"], feats["fp32"]
        out["resnet50_bf16_rel_error_vs_fp32"] = float(f"{np.linalg.norm(a - b) / np.linalg.norm(b):.2e}")
    if dev.type == "cuda":
        out["resnet50_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def dphase(dev: torch.device, quick: bool) -> dict:
    rng = np.random.default_rng(1)
    n = 512 if quick else 8192
    faces = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    out = {}
    for variant in ("mimamo", "paper"):
        for bs in (256, 1024):
            delta_phase(faces[:bs + 1], variant=variant, device=dev.type, batch_size=bs)   # warm-up, buffers
            t = min(_wall(lambda v=variant, b=bs: delta_phase(faces, variant=v, device=dev.type, batch_size=b))
                    for _ in range(3))
            out[f"dphase_{variant}_b{bs}_frames_per_s"] = round(n / t)
            say(f"ΔPhase {variant} batch {bs} on {dev}: {n / t:.0f} frames/s")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    m = 256 if quick else 1024
    delta_phase(faces[:257])
    t = min(_wall(lambda: delta_phase(faces[:m])) for _ in range(2))
    torch.set_num_threads(threads)
    out["dphase_mimamo_cpu_1thread_frames_per_s"] = round(m / t)
    if dev.type == "cuda":
        out["dphase_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def _wall(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    from gpu_parts.pipeline import features, trainer  # the sections that run the CLI or read a cache
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", default="1,4,8,16", help="worker counts of the features section")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device (torch.cuda.is_available() is False); `--device cpu --quick` "
                                     "checks the script"}))
        sys.exit(0)
    result = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
              "cpus": os.cpu_count()}
    todo = [s for s in a.sections.split(",") if s]
    unknown = set(todo) - set(SECTIONS)
    if unknown:
        sys.exit(f"bench/gpu.py: unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    tmp = Path(tempfile.mkdtemp(prefix="mimamo-gpu-bench-"))
    try:
        for name in todo:
            t0 = time.perf_counter()
            if name == "features":
                part = features(dev, [int(w) for w in a.workers.split(",")], tmp / "features", a.quick)
            elif name == "trainer":
                part = trainer(dev, tmp / "trainer", a.quick)
            else:
                part = globals()[name](dev, a.quick)
            result.update(part)
            result[f"seconds_{name}"] = round(time.perf_counter() - t0, 1)
            say(json.dumps(part))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
