"""One video's stage chain: decode -> align -> motion + spatial -> write, streamed in chunks.

This is what a Dask worker runs for each video. Memory is bounded by the decode chunk (a few dozen raw frames)
plus one cache chunk (CHUNK_T aligned faces and their features), whatever the video's length. This module is
the one place that decides "already done?" for a video (`plan`).
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from features.errors import BadInputError
from pipeline import store
from pipeline.manifest import VideoEntry, fit_labels, load_labels

FACE_VERSION = "1"
SPATIAL_VERSION = "1"
MOTION_ARRAYS = {"dphase": ("dphase_s0", "dphase_s1"), "phase": ("phase_s0", "phase_s1"), "flow": ("flow",)}
DECODE_CHUNK = 32   # raw frames held at once: 32 x 1920x1080x3 is 200 MB, the largest buffer a worker holds


@dataclass(frozen=True)
class Settings:
    """Everything that decides what a video's arrays contain (and so their fingerprints), plus how to run."""

    stages: tuple[str, ...] = ("align", "motion", "spatial")
    extras: tuple[str, ...] = ()              # "phase", "flow": ablation inputs
    weights: str = "random"                   # path to resnet50_ferplus_dag.pth, or "random"
    keep_faces: bool = False                  # store face224 (lets spatial features be redone without video)
    gamma_jitter: float = 0.0                 # paper Fig. 5: per-frame gamma u^g, g ~ U[1-b, 1+b]
    seed: int = 0
    motion: dict = field(default_factory=dict)   # MotionConfig overrides
    face: dict = field(default_factory=dict)     # FaceTracker overrides
    align_smooth: float = 1.5                 # sigma (frames) of the zero-phase landmark smoothing before alignment
    device: str = "cpu"
    threads: int = 1                          # torch threads per task

    def motion_kinds(self) -> list[str]:
        """Which motion arrays to compute: dphase (with the motion stage) and the extras."""
        return (["dphase"] if "motion" in self.stages else []) + [e for e in self.extras if e in MOTION_ARRAYS]


# ---------------------------------------------------------------- fingerprints


def fingerprints(s: Settings, entry: VideoEntry, encoder_fp: dict | None = None) -> dict[str, str]:
    """The fingerprint each array of this video must carry under these settings."""
    from features.face import FaceTracker
    from features.motion import FlowConfig, MotionConfig
    from features.smooth_align import SmoothAligner

    face = store.fingerprint("face", FACE_VERSION, FaceTracker(**s.face).params, SmoothAligner(s.align_smooth).params,
                             {"gamma_jitter": s.gamma_jitter, "seed": s.seed if s.gamma_jitter else None})
    out = {n: face for n in ("valid", "landmarks", "face48")}
    if s.keep_faces:
        out["face224"] = face
    mcfg = MotionConfig(**s.motion).as_dict()
    for kind in s.motion_kinds():
        cfg = FlowConfig().as_dict() if kind == "flow" else mcfg
        for name in MOTION_ARRAYS[kind]:
            out[name] = store.fingerprint(kind, cfg, face)
    if "spatial" in s.stages:
        out["resnet50"] = store.fingerprint("spatial", SPATIAL_VERSION, encoder_fp or encoder_fingerprint(s), face)
    out["labels"] = store.fingerprint("labels", _label_source(entry))
    return out


def encoder_fingerprint(s: Settings) -> dict:
    """The spatial encoder's fingerprint without loading the network (weights are hashed, not read into torch)."""
    from features.backbone import ARCH, resolve_weights, sha256_file

    if s.weights == "random":
        return {"architecture": ARCH, "weights": f"random:seed={s.seed}"}
    path = resolve_weights(s.weights)
    if not Path(path).is_file():
        get_encoder(s)   # raises the encoder's own message: where to put the file
    return {"architecture": ARCH, "weights": f"sha256:{sha256_file(path)}"}


def _label_source(entry: VideoEntry) -> list:
    files = [(str(p), p.stat().st_size, p.stat().st_mtime) for p in entry.label_files.values() if p.is_file()]
    return [sorted(files), entry.video_labels]


# ---------------------------------------------------------------- planning ("already done?")


@dataclass
class Plan:
    """What a video needs: 'skip', 'full' (decode everything) or 'update' (rewrite some arrays)."""

    action: str
    arrays: list[str] = field(default_factory=list)   # for 'update': the arrays to recompute
    needs_video: bool = False                          # an update that cannot be done from face48/face224
    reason: str = ""


def plan(cache: Path, dataset: str, entry: VideoEntry, want: dict[str, str]) -> Plan:
    """Compare a video's group with the fingerprints it should have. The only place that decides 'done'."""
    status = store.group_status(cache, dataset, entry.video)
    if status is None:
        return Plan("full", reason="new")
    if status != "done":
        return Plan("full", reason=f"partial group ({status}): redone")
    g = store.open_video(cache, dataset, entry.video)
    have = dict(g.attrs.get("fingerprints", {}))
    src = g.attrs.get("source_identity")
    if entry.path.is_file() and src and src != _source_identity(entry.path):
        return Plan("full", reason="source video changed")
    if any(have.get(n) != want[n] for n in ("valid", "landmarks", "face48")):
        return Plan("full", reason="face settings changed")
    stale = [n for n, fp in want.items() if have.get(n) != fp]
    if not stale:
        return Plan("skip", reason="done")
    needs_video = any(n == "face224" or (n == "resnet50" and have.get("face224") != want["face48"]) for n in stale)
    return Plan("update", stale, needs_video, reason="recompute " + ",".join(stale))


def _source_identity(path: Path) -> list:
    st = path.stat()
    return [st.st_size, int(st.st_mtime)]


# ---------------------------------------------------------------- models cached per worker process

_ENCODERS: dict[tuple, object] = {}


def get_encoder(s: Settings):
    """The spatial encoder for these settings, loaded once per process."""
    import warnings

    from features.backbone import SpatialEncoder, resolve_weights

    weights = s.weights if s.weights == "random" else resolve_weights(s.weights)
    key = (weights, s.device, s.seed)
    if key not in _ENCODERS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the 'random weights' warning is printed once by the CLI, not per worker
            _ENCODERS[key] = SpatialEncoder(weights, device=s.device, seed=s.seed)
    return _ENCODERS[key]


# ---------------------------------------------------------------- computing


class FeatureComputer:
    """Turns aligned face chunks into motion and spatial arrays; carries the previous face across chunks."""

    def __init__(self, s: Settings, arrays: set[str]):
        from features.motion import FlowConfig, MotionConfig

        self.s, self.arrays = s, arrays
        self.mcfg, self.fcfg = MotionConfig(**s.motion), FlowConfig()
        self.prev48: np.ndarray | None = None
        self.encoder = get_encoder(s) if "resnet50" in arrays else None

    def motion(self, face48: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
        """Motion arrays for a chunk; row 0 uses the last face of the previous chunk when it was valid."""
        from features import motion as M

        out = {}
        prev = self.prev48
        if "dphase_s0" in self.arrays:
            r = M.delta_phase(face48, valid, prev, config=self.mcfg, device=self.s.device)
            out.update(dphase_s0=r["s0"], dphase_s1=r["s1"])
        if "phase_s0" in self.arrays:
            r = M.phase(face48, valid, config=self.mcfg, device=self.s.device)
            out.update(phase_s0=r["s0"], phase_s1=r["s1"])
        if "flow" in self.arrays:
            out["flow"] = M.optical_flow(face48, valid, prev, config=self.fcfg)["flow"]
        self.prev48 = face48[-1] if valid[-1] else None
        return out

    def spatial(self, face224: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """resnet50 rows for a chunk: features of valid frames, zeros elsewhere (no face, nothing to encode)."""
        feats = np.zeros((len(valid), 2048), np.float32)
        if valid.any():
            feats[valid] = self.encoder.encode(face224[valid])
        return feats


def _aligned_chunks(entry: VideoEntry, s: Settings, report):
    """Decode, track, and align (from time-smoothed landmarks) in CHUNK_T-frame blocks, DECODE_CHUNK frames at a time."""
    from features.face import AlignedFaces, FaceTracker
    from features.motion import gamma_jitter
    from features.smooth_align import SmoothAligner
    from features.video import iter_chunks

    tracker = FaceTracker(**s.face)
    aligner = SmoothAligner(s.align_smooth, crop_size=tracker.crop_size, gray_size=tracker.gray_size,
                            scale=tracker.scale)
    rng = np.random.default_rng([s.seed, int.from_bytes(entry.video.encode()[:8].ljust(8, b"\0"), "little")])
    parts, n = [], 0

    def blocks(done: AlignedFaces | None, final: bool = False):
        nonlocal parts, n
        if done is not None and len(done):
            parts.append(done)
            n += len(done)
        while n >= store.CHUNK_T or (final and n):
            block = AlignedFaces.concat(parts)
            yield _slice(block, 0, min(store.CHUNK_T, n))
            rest = _slice(block, min(store.CHUNK_T, n), len(block))
            parts, n = ([rest] if len(rest) else []), len(rest)

    for chunk in iter_chunks(entry.path, DECODE_CHUNK):
        frames = chunk.frames
        if s.gamma_jitter:
            frames = gamma_jitter(frames, s.gamma_jitter, rng)
        tracked = tracker.process(frames)   # its own crops are discarded: alignment uses smoothed landmarks
        yield from blocks(aligner.push(frames, tracked.landmarks, tracked.valid))
        report(len(frames))
    yield from blocks(aligner.flush(), final=True)


def _slice(a, lo: int, hi: int):
    from features.face import AlignedFaces

    return AlignedFaces(a.landmarks[lo:hi], a.valid[lo:hi], a.face224[lo:hi], a.face48[lo:hi])


def _frame_labels(entry: VideoEntry, labels: np.ndarray | None, n: int) -> np.ndarray:
    """The labels array [n, 2]: the file's rows (one per decoded frame, else an error), or NaN when unlabelled."""
    if labels is None:
        return np.full((n, 2), np.nan, np.float32)
    return fit_labels(labels, n, next(iter(entry.label_files.values())))


def extract_full(cache: Path, dataset: str, entry: VideoEntry, s: Settings, want: dict[str, str], report) -> dict:
    """Decode the video and write a new group with every wanted array; status=done last."""
    from features.video import probe

    info = probe(entry.path)
    labels = load_labels(entry)   # read first: a malformed label file fails before any decoding
    names = [n for n in want if n != "labels"] + ["labels"]
    attrs = {"fps": info.fps, "width": info.width, "height": info.height, "source": str(entry.path),
             "split": entry.split, "source_size": entry.path.stat().st_size,
             "source_mtime": entry.path.stat().st_mtime, "source_identity": _source_identity(entry.path),
             "video_labels": entry.video_labels, "settings": asdict(s)}
    w = store.VideoWriter(cache, dataset, entry.video, names, attrs)
    try:
        comp = FeatureComputer(s, set(names))
        n = 0
        for a in _aligned_chunks(entry, s, report):
            w.append("valid", a.valid)
            w.append("landmarks", a.landmarks)
            w.append("face48", a.face48)
            if "face224" in names:
                w.append("face224", a.face224)
            for name, arr in comp.motion(a.face48, a.valid).items():
                w.append(name, arr)
            if comp.encoder is not None:
                w.append("resnet50", comp.spatial(a.face224, a.valid))
            n += len(a.valid)
        if n == 0:
            raise BadInputError(entry.path, "decoded no frames", "check the file")
        lab = _frame_labels(entry, labels, n)
        for lo in range(0, n, store.CHUNK_T):
            w.append("labels", lab[lo:lo + store.CHUNK_T])
        w.finish(want, {"n_frames": n})
    except BaseException:
        w.discard()
        raise
    return {"n_frames": n, "decoded": n}


def extract_update(cache: Path, dataset: str, entry: VideoEntry, s: Settings, want: dict[str, str],
                   p: Plan, report) -> dict:
    """Recompute only the stale arrays of a done group, from face48/face224 when that suffices."""
    g = store.open_video(cache, dataset, entry.video, mode="r+")
    n = int(g.attrs["n_frames"])
    store.mark_stale(g, p.arrays)
    comp = FeatureComputer(s, set(p.arrays))
    for name in p.arrays:
        if name != "labels" and (name not in g or g[name].shape[0] != n):
            store.create_array(g, name, n)
    motion = any(name in p.arrays for names in MOTION_ARRAYS.values() for name in names)
    decoded = 0
    if p.needs_video:
        from features.video import probe
        probe(entry.path)
        lo = 0
        for a in _aligned_chunks(entry, s, lambda k: None):
            hi = lo + len(a.valid)
            if "face224" in p.arrays:
                g["face224"][lo:hi] = a.face224
            if "resnet50" in p.arrays:
                g["resnet50"][lo:hi] = comp.spatial(a.face224, a.valid).astype(np.float16)
            report(hi - lo)
            lo, decoded = hi, hi
    for lo in range(0, n, store.CHUNK_T):   # whole Zarr chunks: one writer, aligned slices
        hi = min(lo + store.CHUNK_T, n)
        valid = g["valid"][lo:hi]
        if motion:   # comp computes only the stale motion arrays; it carries the previous face across chunks
            for name, arr in comp.motion(g["face48"][lo:hi], valid).items():
                g[name][lo:hi] = arr.astype(np.float16)
        if "resnet50" in p.arrays and not p.needs_video:
            g["resnet50"][lo:hi] = comp.spatial(g["face224"][lo:hi], valid).astype(np.float16)
        if not p.needs_video:
            report(hi - lo)
    if "labels" in p.arrays:
        store.create_array(g, "labels", n)[:] = _frame_labels(entry, load_labels(entry), n)
        g.attrs["video_labels"] = entry.video_labels
    store.set_fingerprints(g, {k: want[k] for k in p.arrays})
    return {"n_frames": n, "decoded": decoded}


def process_video(cache: str, dataset: str, entry: VideoEntry, s: Settings, report=None,
                  want: dict[str, str] | None = None) -> dict:
    """Bring one video's group up to date; never raises for a bad video: the row says what failed.

    `want` (the arrays' fingerprints) is computed once by the client; without it, it is computed here.
    """
    import torch

    from pipeline.allocator import keep_freed_memory

    torch.set_num_threads(max(1, s.threads))
    keep_freed_memory()  # workers are fresh processes: tune their allocator too (idempotent)
    report = report or (lambda k: None)
    cache = Path(cache)
    t0 = time.perf_counter()
    row = {"video": entry.video, "split": entry.split, "source": str(entry.path), "error": None}
    try:
        want = want or fingerprints(s, entry)
        p = plan(cache, dataset, entry, want)
        row["action"] = p.action
        if p.action == "skip":
            out = {"decoded": 0}
        elif p.action == "full":
            out = extract_full(cache, dataset, entry, s, want, report)
        else:
            out = extract_update(cache, dataset, entry, s, want, p, report)
        row.update(store.index_row(cache, dataset, entry.video), action=p.action, reason=p.reason,
                   decoded=out["decoded"])
    except Exception as e:  # per-video isolation: record, clean up, carry on with the others
        msg = str(e) if isinstance(e, BadInputError) else f"{entry.path}: {type(e).__name__}: {e}"
        row.update(status="failed", error=msg, action="failed", decoded=0, n_frames=0)
    row["seconds"] = time.perf_counter() - t0
    row["worker_pid"] = os.getpid()
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # the worker's peak so far
    return row

