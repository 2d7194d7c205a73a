"""Sequences of frames streamed from the feature cache (never a video).

An item is L consecutive frames of one video: resnet50 [L, 2048] (``rgb``, when the model has the spatial stream)
and the motion rows the L windows need, [L + N - 1, 2, h, w] per scale (``m0``, ``m1``, when it has the temporal
stream): the loader reads only the arrays the model uses, so a cache without resnet50 trains a temporal model.
Frame t's window is the N motion rows t-left .. t+right, right = N // 2, left = N - 1 - right (N = 12:
differences t-5..t+6, i.e. frames t-6..t+6, centred on t). The windows overlap, so items carry the rows once and
``windows`` unfolds them on the compute device: 12x less data through the worker pipes than materialised windows.
Channels are merged as orientation-major: channel = o * N + k.

Rows outside the video are zero for differences (dphase, flow: no motion) and the edge row repeated for
``phase`` (a state, not a change); frames whose window was cut are marked ``full=False``.
Memory is bounded: a worker holds at most ``cache_mb`` of decoded Zarr chunks (LRU), whatever the cache's size.

``sampling="snippets"`` (video-level labels, the paper's OMG sampling): an item is up to L *snippets* of one video,
one per second (``snippet_step`` frames apart): frame c's resnet50 row and its N motion rows, the motion already as
windows [L, N, 2, h, w] (snippets do not overlap). Training draws each video's first snippet at random in its first
second per epoch (``set_epoch``: from the seed and the epoch only, so a resumed run draws the same); evaluation
samples once, from the first frame that puts a snippet on a face. ``frames`` holds the snippet frames (-1: none).
"""
from __future__ import annotations

import json
import math
import os
from collections import OrderedDict

import numpy as np
import torch

from features.errors import BadInputError
from pipeline import arrays, chunks, store
from train.config import TrainConfig


def window_span(n: int) -> tuple[int, int]:
    """(left, right): frame t's window is motion rows t-left .. t+right (n rows in all)."""
    right = n // 2
    return n - 1 - right, right


def sequences(n_frames: int, length: int = 64, stride: int = 32, test: bool = False) -> list[tuple[int, int, int]]:
    """(start, own_lo, own_hi) per sequence; frames [own_lo, own_hi) are scored from that sequence.

    Training: starts every ``stride`` frames, plus an end-aligned one so the last frames are seen.
    Test: non-overlapping, plus an end-aligned tail that owns only the frames not yet covered, so every frame
    is predicted exactly once. A video shorter than L is one (padded) sequence.
    """
    if n_frames <= length:
        return [(0, 0, n_frames)]
    starts = list(range(0, n_frames - length + 1, length if test else stride))
    if starts[-1] + length < n_frames:
        starts.append(n_frames - length)
    if not test:  # in training every frame of a sequence is in the loss
        return [(s, s, s + length) for s in starts]
    out, covered = [], 0
    for s in starts:
        out.append((s, covered, s + length))
        covered = s + length
    return out


def snippet_step(fps) -> int:
    """Frames between snippets: one second of video (the paper samples OMG at one snippet per second)."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = float("nan")
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"a video without a frame rate ({fps}) cannot be sampled one snippet per second")
    return max(1, round(fps))


def snippet_windows(rows: torch.Tensor) -> torch.Tensor:
    """[B, L, N, O, h, w] snippet motion rows -> [B, L, O*N, h, w] windows (channel = o * N + k, as ``windows``)."""
    b, t, n, o, h, w = rows.shape
    return rows.permute(0, 1, 3, 2, 4, 5).reshape(b, t, o * n, h, w)


def windows(rows: torch.Tensor, n: int) -> torch.Tensor:
    """[B, L+N-1, O, h, w] motion rows -> [B, L, O*N, h, w] per-frame windows (channel = o * N + k)."""
    b, t, o, h, w = rows.shape
    win = rows.unfold(1, n, 1)                       # [B, L, O, h, w, N]
    return win.permute(0, 1, 2, 5, 3, 4).reshape(b, t - n + 1, o * n, h, w)


class ChunkCache:
    """Decoded Zarr time chunks, least recently used first out, bounded in bytes (one per worker)."""

    def __init__(self, cache, dataset: str, max_mb: float = 128):
        self.cache, self.dataset, self.max_bytes = cache, dataset, int(max_mb * 2**20)
        self.groups: dict[str, object] = {}
        self.lru: OrderedDict = OrderedDict()
        self.bytes = 0

    def group(self, video: str):
        """The video's group, opened lazily (in the worker that uses it)."""
        if video not in self.groups:
            self.groups[video] = store.open_video(self.cache, self.dataset, video)
        return self.groups[video]

    def chunk(self, video: str, name: str, c: int) -> np.ndarray:
        """Decoded chunk c of one array."""
        key = (video, name, c)
        hit = self.lru.get(key)
        if hit is not None:
            self.lru.move_to_end(key)
            return hit
        # a chunk that cannot be decoded: a one-line error naming it and the repair, the array marked damaged
        data = chunks.read_rows(self.cache, self.dataset, video, self.group(video), name, c * store.CHUNK_T,
                                (c + 1) * store.CHUNK_T)
        self.lru[key] = data
        self.bytes += data.nbytes
        while self.bytes > self.max_bytes and len(self.lru) > 1:
            _, old = self.lru.popitem(last=False)
            self.bytes -= old.nbytes
        return data

    def read(self, video: str, name: str, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) of one array (0 <= lo <= hi <= T)."""
        ct = store.CHUNK_T
        parts = [self.chunk(video, name, c)[max(lo - c * ct, 0):hi - c * ct]
                 for c in range(lo // ct, max(math.ceil(hi / ct), lo // ct + 1))]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


class SequenceDataset(torch.utils.data.Dataset):
    """Items of L frames from a list of cached videos (see the module docstring for the layout).

    streams: which arrays are read ("both", "spatial": resnet50; "both", "temporal": the arrays of ``input``, a
    model input such as "dphase", "dphase@paper" or "flow", see ``pipeline.arrays.input_arrays``).
    level="video" (OMG): every item carries its video's label in ``vlabel`` and the frame labels are NaN.
    sampling="snippets": items of snippets one second apart (module docstring), for video-level labels.
    """

    def __init__(self, cache, dataset: str, videos: list[dict], *, window: int = 12, input: str = "dphase",
                 streams: str = "both", length: int = 64, stride: int = 32, test: bool = False,
                 level: str = "frame", cache_mb: float = 64, sampling: str = "frames"):
        self.cache, self.dataset, self.window, self.input = cache, dataset, window, input
        self.spatial = streams in ("both", "spatial")
        self.motion = arrays.input_arrays(input) if streams in ("both", "temporal") else ()
        # rows outside the video: a difference (dphase, flow) is no motion, a phase is a state that persists
        self.replicate = arrays.parse_input(input)[0].name == "phase"
        self.length, self.level, self.cache_mb = length, level, cache_mb
        self.videos = [dict(v) for v in videos]
        self.sampling, self.test = sampling, test
        if sampling == "snippets":
            self.steps = []
            for v in self.videos:
                try:
                    self.steps.append(snippet_step(v.get("fps")))
                except ValueError as e:
                    raise BadInputError(store.video_dir(cache, dataset, v["video"]), str(e), "extract it again with "
                                        "`features` (the frame rate is read from the video)") from None
            counts = [math.ceil(int(v["n_frames"]) / st) for v, st in zip(self.videos, self.steps)]
            self.length = max(1, min(length, max(counts, default=1)))   # no item longer than the longest video
            self.items = [(i, k, None, None) for i, c in enumerate(counts) for k in range(0, c, self.length)]
            self.offsets: list[int] | None = None    # training: set_epoch draws them
            self._eval_offsets: dict[int, int] = {}
        elif sampling == "frames":
            self.items = [(i, *s) for i, v in enumerate(self.videos)
                          for s in sequences(int(v["n_frames"]), length, stride, test)]
        else:
            raise ValueError(f"sampling must be 'frames' or 'snippets', not {sampling!r}")
        self._reader = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def reader(self) -> ChunkCache:
        # Opened on first use in each process, so forked workers never share Zarr handles.
        if self._reader is None or self._pid != os.getpid():
            self._reader, self._pid = ChunkCache(self.cache, self.dataset, self.cache_mb), os.getpid()
        return self._reader

    def arrays_for(self, i: int) -> tuple[str, tuple[str, ...]]:
        """(spatial array, motion arrays) item i reads; train/augment.py reads the mirrored faces' for some."""
        return "resnet50", self.motion

    def _rows(self, video: str, name: str, lo: int, hi: int, n: int, replicate: bool) -> np.ndarray:
        """Rows [lo, hi) of an array, outside [0, n) zero-filled or edge-replicated."""
        a, b = max(lo, 0), min(hi, n)
        data = self.reader.read(video, name, a, b)
        if a == lo and b == hi:
            return data
        if replicate:
            return data[np.clip(np.arange(lo, hi), a, b - 1) - a]
        out = np.zeros((hi - lo, *data.shape[1:]), data.dtype)
        out[a - lo:b - lo] = data
        return out

    def set_epoch(self, seed: int, epoch: int) -> None:
        """Training snippets: each video's first snippet frame for this epoch, from (seed, epoch) only."""
        if self.sampling != "snippets" or self.test:
            return
        rng = np.random.default_rng([seed % 2**32, epoch])
        self.offsets = [int(rng.integers(0, min(st, int(v["n_frames"])))) for v, st in zip(self.videos, self.steps)]

    def _offset(self, vi: int) -> int:
        """First snippet frame: drawn per epoch in training; at evaluation the first that puts a snippet on a face."""
        if not self.test:
            if self.offsets is None:
                raise RuntimeError("training snippets: call set_epoch(seed, epoch) before reading items")
            return self.offsets[vi]
        if vi not in self._eval_offsets:
            v, st = self.videos[vi], self.steps[vi]
            n = int(v["n_frames"])
            valid = self.reader.read(v["video"], "valid", 0, n).astype(bool)
            self._eval_offsets[vi] = next((o for o in range(min(st, n)) if valid[o::st].any()), 0)
        return self._eval_offsets[vi]

    def _gather(self, video: str, name: str, centres: np.ndarray, left: int, right: int, n: int,
                replicate: bool) -> np.ndarray:
        """Rows c-left..c+right of one array for each centre c: [len(centres), left+right+1, ...] (one read)."""
        if not len(centres):    # a last item whose snippets all fell past the end this epoch
            return self._gather(video, name, np.zeros(1, int), left, right, n, replicate)[:0]
        lo, hi = int(centres.min()) - left, int(centres.max()) + right + 1
        block = self._rows(video, name, lo, hi, n, replicate)
        return block[centres[:, None] - lo + np.arange(-left, right + 1)[None]]

    def _snippets(self, i: int) -> dict:
        vi, k0, _, _ = self.items[i]
        v = self.videos[vi]
        name, n, L, st = v["video"], int(v["n_frames"]), self.length, self.steps[vi]
        centres = self._offset(vi) + st * (k0 + np.arange(L))
        inside = centres < n
        c = centres[inside]
        left, right = window_span(self.window)

        def pad(x: np.ndarray, fill=0) -> np.ndarray:
            out = np.full((L, *x.shape[1:]), fill, x.dtype)
            out[: len(x)] = x        # snippets inside the video come first
            return out

        out = {"video_idx": vi, "frames": np.where(inside, centres, -1),
               "valid": pad(self._gather(name, "valid", c, 0, 0, n, False)[:, 0].astype(bool)), "own": inside,
               "full": inside & (centres - left >= (0 if self.replicate else 1)) & (centres + right < n)}
        rgb, motion = self.arrays_for(i)
        if self.spatial:
            out["rgb"] = pad(self._gather(name, rgb, c, 0, 0, n, False)[:, 0])
        for s, key in enumerate(motion):
            out[f"m{s}"] = pad(self._gather(name, key, c, left, right, n, self.replicate))
        out["labels"] = pad(self._gather(name, "labels", c, 0, 0, n, False)[:, 0].astype(np.float32), np.nan)
        out["vlabel"] = np.array([v.get("video_arousal", np.nan), v.get("video_valence", np.nan)], np.float32)
        out["mask"] = out["valid"] & inside
        return out

    def __getitem__(self, i: int) -> dict:
        if self.sampling == "snippets":
            return self._snippets(i)
        vi, start, own_lo, own_hi = self.items[i]
        v = self.videos[vi]
        name, n, L = v["video"], int(v["n_frames"]), self.length
        frames = np.arange(start, start + L)
        inside = frames < n
        left, right = window_span(self.window)
        rgb, motion = self.arrays_for(i)
        out = {
            "video_idx": vi,
            "frames": np.where(inside, frames, -1),
            "valid": self._rows(name, "valid", start, start + L, n, False).astype(bool),
            "own": inside & (frames >= own_lo) & (frames < own_hi),
            # row 0 of a difference array is a zero, not a measured difference
            "full": inside & (frames - left >= (0 if self.replicate else 1)) & (frames + right < n),
        }
        if self.spatial:
            out["rgb"] = self._rows(name, rgb, start, start + L, n, False)
        for s, key in enumerate(motion):
            out[f"m{s}"] = self._rows(name, key, start - left, start + L + right, n, self.replicate)
        labels = self._rows(name, "labels", start, start + L, n, False).astype(np.float32)
        labels[~inside] = np.nan
        out["labels"] = labels
        lab_ok = np.isfinite(labels).all(1)
        if self.level == "video":
            out["vlabel"] = np.array([v.get("video_arousal", np.nan), v.get("video_valence", np.nan)], np.float32)
            out["mask"] = out["valid"] & inside
        else:
            out["mask"] = out["valid"] & inside & lab_ok
        return out


def run_arguments(cfg: TrainConfig, level: str, *, train: bool) -> dict:
    """SequenceDataset's keyword arguments for a run's sequences: its training ones, or the ones it is evaluated on
    (validation, test, and predict's), every frame once (stride = length). One place, so predict reads a checkpoint's
    videos as its training run evaluated them."""
    return {"window": cfg.window, "input": cfg.input, "streams": cfg.streams, "length": cfg.length, "level": level,
            "cache_mb": cfg.cache_mb, "stride": cfg.stride if train else cfg.length, "test": not train,
            # video-level labels read one snippet per second (the paper's OMG sampling), per-frame ones sequences
            "sampling": "snippets" if level == "video" else "frames"}


def collate(items: list[dict | BadInputError]) -> dict | BadInputError:
    """Stack items into tensors (float16 features stay float16 until they reach the device); an error passes on."""
    for it in items:
        if isinstance(it, BadInputError):
            return it
    return {k: torch.as_tensor(np.stack([np.asarray(it[k]) for it in items])) for k in items[0]}


class _Reported(torch.utils.data.Dataset):
    """Items of ``ds``; bad input (a damaged chunk) becomes the item, to be raised whole in the main process.

    A worker's exception reaches the main process as a RuntimeError holding its traceback's text (torch rebuilds it
    from the message alone), which the CLI cannot turn into its one-line error; the error object itself can travel.
    """

    def __init__(self, ds: torch.utils.data.Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        try:
            return self.ds[i]
        except BadInputError as e:
            return e


class _Loader(torch.utils.data.DataLoader):
    """A DataLoader that raises the bad input its workers met (see ``_Reported``)."""

    def __iter__(self):
        for batch in super().__iter__():
            if isinstance(batch, BadInputError):
                raise batch
            yield batch


def loader(ds: SequenceDataset, batch_size: int, order: list[int] | None = None, num_workers: int = 2,
           pin: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``ds`` in the given order (the trainer draws the order from a per-epoch seed)."""
    sampler = order if order is not None else range(len(ds))
    return _Loader(_Reported(ds), batch_size=batch_size, sampler=sampler, collate_fn=collate,
                                       num_workers=num_workers, pin_memory=pin,
                                       persistent_workers=False, prefetch_factor=2 if num_workers else None)


def video_table(cache, dataset: str) -> list[dict]:
    """The done videos of a dataset as dicts (video, split, n_frames, labels, fingerprints as a dict)."""
    idx = store.done_videos(cache, dataset)
    rows = idx.to_dict("records")
    for r in rows:
        r["fingerprints"] = json.loads(r["fingerprints"]) if isinstance(r.get("fingerprints"), str) else {}
        for k in ("video_arousal", "video_valence"):
            r[k] = float(r[k]) if r.get(k) is not None and np.isfinite(r[k]) else float("nan")
    return rows

