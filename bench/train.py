"""Trainer input pipeline vs model: the loader must outrun training (>= 5x) in bounded memory.

Builds a synthetic cache several times larger than the loader's memory in a temporary folder (random float16
features, written through pipeline.store), then measures
  - loader sequences/s: shuffled training order (stride 32, the worst case for the chunk cache) and a
    sequential test-order pass over the whole cache, with the default 2 workers;
  - peak memory while iterating: total PSS of the main process and its workers (sampled), and its excess over
    the main process before any loader existed (torch alone is a few hundred MB), against the cache's size;
  - the model's training-step rate (sequences/s, forward + backward + SGD step) on CPU, default model
    (paper arch, width 64, window 12, both streams) and the demo's width 16;
and prints one JSON line. The temporary cache is removed at the end. Progress goes to stderr.

    python bench/train.py [--frames 200000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import psutil
import torch

from pipeline import store
from train import data
from train.metrics import ccc_loss
from train.model import MimamoNet


def build(cache: Path, frames: int, per_video: int = 5000) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(0, frames, per_video):
        n = min(per_video, frames - i)
        name = f"b{i // per_video:03d}"
        w = store.VideoWriter(cache, "bench", name, ["valid", "resnet50", "dphase_s0", "dphase_s1", "labels"],
                              {"split": "train", "fps": 30.0})
        for s in range(0, n, store.CHUNK_T):   # chunk by chunk: the builder's memory stays small too
            m = min(store.CHUNK_T, n - s)
            w.append("valid", np.ones(m, bool))
            w.append("resnet50", rng.random((m, 2048), dtype=np.float32).astype("f2"))
            w.append("dphase_s0", rng.standard_normal((m, 2, 48, 48), dtype=np.float32).astype("f2"))
            w.append("dphase_s1", rng.standard_normal((m, 2, 24, 24), dtype=np.float32).astype("f2"))
            w.append("labels", rng.uniform(-1, 1, (m, 2)).astype("f4"))
        w.finish({"resnet50": "bench"}, {})
        rows.append(store.index_row(cache, "bench", name))
        print(f"built {i + n}/{frames} frames", file=sys.stderr)
    store.write_index(cache, "bench", rows)


class PeakPSS:
    """Samples the total PSS of this process and its children every 50 ms."""

    def __init__(self):
        self.peak, self.stop = 0, False
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        me = psutil.Process()
        while not self.stop:
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except (psutil.Error, OSError):
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop = True
        self.t.join()


def loader_rate(ds, order, batch=16, workers=2, limit=None) -> tuple[float, int]:
    n, t0 = 0, None
    for i, b in enumerate(data.loader(ds, batch, order, workers)):
        if i == 0:
            t0 = time.perf_counter()   # exclude worker start-up
            continue
        n += len(b["rgb"])
        if limit and n >= limit:
            break
    return n / (time.perf_counter() - t0), n


def model_rate(width: int, batch: int = 4, steps: int = 2) -> float:
    torch.manual_seed(0)
    N, L = 12, 64
    m = MimamoNet(streams="both", window=N, width=width)
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    rgb = torch.randn(batch, L, 2048)
    r0, r1 = torch.randn(batch, L + N - 1, 2, 48, 48), torch.randn(batch, L + N - 1, 2, 24, 24)
    lab, mask = torch.rand(batch, L, 2) * 2 - 1, torch.ones(batch, L, dtype=torch.bool)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        out = m(rgb, data.windows(r0, N), data.windows(r1, N), mask)
        loss = ccc_loss(out["frame"], lab, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return batch / float(np.median(times[1:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--shuffled", type=int, default=1200, help="sequences timed in shuffled training order")
    ap.add_argument("--keep", default=None, help="build/keep the cache here instead of a temporary folder")
    a = ap.parse_args()
    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="mimamo-bench-"))
    try:
        if not (tmp / "bench" / "index.parquet").is_file():
            t = time.perf_counter()
            build(tmp, a.frames)
            print(f"cache built in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        disk = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        rows = data.video_table(tmp, "bench")
        base = psutil.Process().memory_full_info().pss   # torch & co. imported, before any loader exists
        with PeakPSS() as mem:
            test_ds = data.SequenceDataset(tmp, "bench", rows, window=12, test=True)
            seq_rate, seq_n = loader_rate(test_ds, None)
            print(f"sequential: {seq_rate:.1f} seq/s over {seq_n} sequences", file=sys.stderr)
            train_ds = data.SequenceDataset(tmp, "bench", rows, window=12, stride=32)
            order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(0)).tolist()
            shuf_rate, shuf_n = loader_rate(train_ds, order, limit=a.shuffled)
            print(f"shuffled: {shuf_rate:.1f} seq/s over {shuf_n} sequences", file=sys.stderr)
        m64 = model_rate(64, batch=2, steps=1)
        m16 = model_rate(16)
        print(f"model: {m64:.2f} seq/s (width 64), {m16:.2f} seq/s (width 16)", file=sys.stderr)
        print(json.dumps({
            "cache_frames": a.frames, "cache_gb": round(disk / 1e9, 2),
            "loader_seq_per_s_shuffled": round(shuf_rate, 1), "loader_seq_per_s_sequential": round(seq_rate, 1),
            "loader_frames_per_s_sequential": round(seq_rate * 64), "loader_workers": 2,
            "baseline_pss_mb": round(base / 2**20), "peak_pss_mb": round(mem.peak / 2**20),
            "loader_extra_pss_mb": round((mem.peak - base) / 2**20),
            "cache_over_peak_memory": round(disk / mem.peak, 1),
            "cache_over_loader_extra_memory": round(disk / max(mem.peak - base, 1), 1),
            "model_train_seq_per_s_width64": round(m64, 2), "model_train_seq_per_s_width16": round(m16, 2),
            "ratio_loader_over_model_width64": round(shuf_rate / m64, 1),
            "ratio_loader_over_model_width16": round(shuf_rate / m16, 1),
            "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 1)}))
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
