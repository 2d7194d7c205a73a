"""bench/gpu.py's sections that run `cli.py features` and the trainer (see bench/gpu.py)."""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[2]


def say(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


class GpuMemory:
    """Samples nvidia-smi once a second: the most GPU memory each process other than this one held, and the whole
    card's use above what it was when sampling started."""

    def __init__(self, on: bool):
        self.on, self.per_pid, self.peak, self.stop = on, {}, 0, False
        self.base = self._total() if on else 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _query(what: str) -> list[list[str]]:
        r = subprocess.run(["nvidia-smi", f"--query-{what}", "--format=csv,noheader,nounits"], capture_output=True,
                           text=True, timeout=20)
        return [[c.strip() for c in line.split(",")] for line in r.stdout.splitlines() if line.strip()]

    def _total(self) -> int:
        return int(self._query("gpu=memory.used")[0][0])

    def _run(self) -> None:
        import os

        while not self.stop:
            for pid, mb in self._query("compute-apps=pid,used_memory"):
                if pid.isdigit() and int(pid) != os.getpid() and mb.isdigit():
                    self.per_pid[pid] = max(self.per_pid.get(pid, 0), int(mb))
            self.peak = max(self.peak, self._total() - self.base)
            time.sleep(1.0)

    def __enter__(self):
        if self.on:
            self.thread.start()
        return self

    def __exit__(self, *a):
        self.stop = True
        if self.on:
            self.thread.join()


def run_features(sources: list[Path], videos: int, workers: int, device: str, folder: Path,
                 stages: str = "align,motion,spatial") -> dict:
    """`cli.py features` on ``videos`` copies of the sources with ``workers`` workers: frames/s and GPU memory."""
    folder.mkdir(parents=True)
    files = []
    for i in range(videos):
        src = sources[i % len(sources)]
        files.append(folder / f"v{i:03d}{src.suffix}")
        shutil.copyfile(src, files[-1])
    return run_cli(list(map(str, files)), videos, workers, device, folder, stages)


def crops_root(sources: list[Path], videos: int, folder: Path) -> Path:
    """Aff-Wild2's layout with organiser-style crops and no video files: 112x112 JPEGs of each frame's centre (where
    the demo's face is), the annotation file giving the frame count (as for Aff-Wild2 entries without a video)."""
    for i in range(videos):
        vid, crops = f"v{i:03d}", folder / "cropped_aligned" / f"v{i:03d}"
        if i >= len(sources):
            shutil.copytree(folder / "cropped_aligned" / f"v{i % len(sources):03d}", crops)
        else:
            crops.mkdir(parents=True)
            cap = cv2.VideoCapture(str(sources[i]))
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                h, w = frame.shape[:2]
                box = frame[h // 2 - 120:h // 2 + 120, w // 2 - 120:w // 2 + 120]
                cv2.imwrite(str(crops / f"{int(cap.get(cv2.CAP_PROP_POS_FRAMES)):05d}.jpg"), cv2.resize(box, (112, 112)))
            cap.release()
        n = len(list(crops.glob("*.jpg")))
        ann = folder / "annotations" / "VA_Set" / "Train_Set" / f"{vid}.txt"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text("valence,arousal\n" + "0.000,0.000\n" * n)
    return folder


def run_cli(inputs: list[str], videos: int, workers: int, device: str, folder: Path, stages: str) -> dict:
    """`cli.py features INPUTS` with ``workers`` workers: frames/s and GPU memory per worker."""
    cmd = [sys.executable, str(ROOT / "cli.py"), "features", *inputs, "--cache", str(folder / "zarr"),
           "--weights", "random", "--workers", str(workers), "--device", device, "--stages", stages, "--no-progress"]
    with GpuMemory(torch.cuda.is_available() and device.startswith("cuda")) as mem:
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=580)
        wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    # the summary table: video, action, status, frames, valid, seconds (the worker's, one video at a time)
    rows = [line.split() for line in r.stdout.splitlines()]
    done = [(int(t[3]), float(t[5])) for t in rows if len(t) >= 6 and t[1] == "full" and t[2] == "done"]
    if len(done) != videos:
        raise RuntimeError(f"{videos} videos, {len(done)} done:\n{r.stdout[-3000:]}")
    frames, busy = sum(f for f, _ in done), sum(sec for _, sec in done)
    per_pid = sorted(mem.per_pid.values())
    row = {"videos": videos, "workers": workers, "frames": frames, "wall_s": round(wall, 1),
           "frames_per_s_wall": round(frames / wall, 1),
           # each worker processes one video at a time: this is the rate once workers are started and busy
           "frames_per_s_busy": round(frames / busy * workers, 1), "frames_per_s_per_worker": round(frames / busy, 1),
           "gpu_mb_per_worker_median": statistics.median(per_pid) if per_pid else None,
           "gpu_mb_per_worker_max": max(per_pid) if per_pid else None,
           "gpu_mb_total_peak": mem.peak if mem.on else None}
    say(f"features {device} {stages} x{workers}: {row}")
    shutil.rmtree(folder, ignore_errors=True)
    return row


def upscaled(src: Path, dst: Path, size=(1280, 720)) -> Path:
    """The video at another frame size (mp4v): decoding cost grows with the pixels, detection runs at 320 px."""
    cap = cv2.VideoCapture(str(src))
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS) or 30.0, size)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.write(cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR))
    cap.release()
    out.release()
    return dst


def decode_rate(path: Path) -> float:
    """Frames/s of decoding alone, through the pipeline's reader (RGB frames in chunks)."""
    from features.video import iter_chunks

    t0, n = time.perf_counter(), 0
    for chunk in iter_chunks(path):
        n += len(chunk.frames)
    return n / (time.perf_counter() - t0)


def features(dev: torch.device, counts: list[int], work: Path, quick: bool) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    from pipeline.demo import make_demo

    n_src, seconds = (2, 1) if quick else (4, 10)
    with ProcessPoolExecutor(n_src) as pool:   # one demo video per process, each its own seed
        list(pool.map(make_demo, [work / f"demo{k}" for k in range(n_src)], [1] * n_src, [seconds] * n_src,
                      range(n_src), [0] * n_src, [False] * n_src))
    sources = sorted(work.glob("demo*/videos/*/*.avi"))
    out = {"features_input": f"{n_src} demo videos (640x360 MJPEG, 30 fps, {seconds} s) copied to 2 videos per "
                             "worker; --weights random; default stages"}
    for n in counts:
        out[f"features_{dev.type}_w{n}"] = run_features(sources, 2 * n, n, dev.type, work / f"w{n}")
    top = max(counts)
    out[f"features_align_only_w{top}"] = run_features(sources, 2 * top, top, "cpu", work / "align", "align")
    if dev.type == "cuda":
        out[f"features_cpu_w{top}"] = run_features(sources, top, top, "cpu", work / "cpu")   # 1 video each: slow
    hd = upscaled(sources[0], work / "hd.mp4")
    out["decode_360p_mjpeg_frames_per_s"] = round(decode_rate(sources[0]), 1)
    out["decode_720p_mp4v_frames_per_s"] = round(decode_rate(hd), 1)
    out["features_align_only_720p_w1"] = run_features([hd], 1, 1, "cpu", work / "hd", "align")
    # Aff-Wild2's organiser crops instead of decoding, detection and alignment (--faces cropped_aligned)
    root = crops_root(sources, 2 * top, work / "crops")
    out[f"features_crops_{dev.type}_w{top}"] = run_cli(
        ["--dataset", "affwild2", "--root", str(root), "--faces", "cropped_aligned"], 2 * top, top, dev.type,
        work / "crops", "align,motion,spatial")
    return out


def trainer(dev: torch.device, work: Path, quick: bool) -> dict:
    """Loader sequences/s and training steps/s at the paper's defaults (train.config.TrainConfig)."""
    from train import data
    from train.config import TrainConfig
    from train.model import MimamoNet
    from train.synth import make_cache
    from train.trainer import loss

    cfg = TrainConfig(width=4 if quick else TrainConfig.width)   # quick: checks the code path, measures nothing
    make_cache(work, "synth", videos=4 if quick else 16, frames=300 if quick else 1000, test_videos=1)
    rows = [r for r in data.video_table(work, "synth") if r["split"] == "train"]
    ds = data.SequenceDataset(work, "synth", rows, window=cfg.window, length=cfg.length, stride=cfg.stride)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0)).tolist()
    out = {"trainer_config": f"batch {cfg.batch_size}, width {cfg.width}, window {cfg.window}, length {cfg.length}, "
                             f"stride {cfg.stride}; {len(ds)} training sequences from {len(rows)} synthetic videos"}
    pin = dev.type == "cuda"
    for workers in (2, 8):
        n, t0 = 0, None
        for i, b in enumerate(data.loader(ds, cfg.batch_size, order, workers, pin)):
            if i == 0:
                t0 = time.perf_counter()   # worker start-up left out
                continue
            n += len(b["rgb"])
        out[f"loader_w{workers}_sequences_per_s"] = round(n / (time.perf_counter() - t0), 1)
        say(f"loader, {workers} workers: {out[f'loader_w{workers}_sequences_per_s']} sequences/s")
    torch.use_deterministic_algorithms(True, warn_only=True)   # as train.trainer.start
    torch.manual_seed(0)
    model = MimamoNet(streams="both", window=cfg.window, width=cfg.width).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def step(batch) -> float:
        value = loss(model, batch, cfg.window, dev, "frame")
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        return value.item()   # the trainer reads every step's loss (a synchronisation, as there)

    for workers in (cfg.num_workers, 8):
        steps, t0 = 0, None
        for i, b in enumerate(data.loader(ds, cfg.batch_size, order, workers, pin)):
            step(b)
            if i == 1:
                t0 = time.perf_counter()   # start-up and the first steps left out
            elif i > 1:
                steps += 1
            if quick and i >= 4:
                break
        out[f"trainer_loader_w{workers}_steps_per_s"] = round(steps / (time.perf_counter() - t0), 2) if steps else None
    batch = next(iter(data.loader(ds, cfg.batch_size, order, 0, pin)))
    for _ in range(3):
        step(batch)
    reps = 3 if quick else 30
    t0 = time.perf_counter()
    for _ in range(reps):
        step(batch)
    out["trainer_model_only_steps_per_s"] = round(reps / (time.perf_counter() - t0), 2)
    out["trainer_model_only_sequences_per_s"] = round(reps * cfg.batch_size / (time.perf_counter() - t0), 1)
    torch.use_deterministic_algorithms(False)
    if dev.type == "cuda":
        out["trainer_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    say(f"trainer: {out}")
    return out
