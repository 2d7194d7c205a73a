"""A training run's configuration: every `cli.py train` flag, which of them decide the result, and a run's identity.

A run's *identity* is everything that decides its numbers: the deciding settings (``decisive``), the content hash
of the checkpoints it starts from, the cache's fingerprints of every array it reads, its videos and what each video's
group was made from (train/videos.py: a replaced video file gives new arrays under the same fingerprints). It is saved in
every checkpoint and metrics.json; ``--resume``, the single-stream sub-runs of a two-stream run and ablation cells
compare it (``differences``) and never continue or reuse a run made under another one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from features.errors import BadInputError
from pipeline import arrays, face_transforms


@dataclass
class TrainConfig:
    """Every `cli.py train` flag. Defaults are the paper's (Aff-Wild scale); the demo passes its own."""

    cache: str = "zarr"
    dataset: str = "demo"
    out: str = "runs/demo"
    streams: str = "both"              # both | spatial | temporal
    input: str = "dphase"              # dphase | dphase@VARIANT | phase | flow (pipeline.arrays.parse_input)
    window: int = 12                   # N motion rows per frame (4..16)
    arch: str = "paper"                # paper (4 blocks) | released (3 blocks)
    width: int = 64                    # first conv block's channels (the released code: 64)
    single_gru: bool = False           # keep a BiGRU in single-stream models (the paper has none)
    folds: int = 5
    fold: int = 0
    pool_validation: bool | None = None   # validation split into the folds (None: the protocol's default, see
    #                                       train/protocol.py: pooled for video-level labels, else held out)
    splits: tuple | None = None        # read only the videos of these splits (None: all); e.g. (train, validation):
    #                                    the paper's OMG cross-validation with a labelled test split in the cache
    seed: int = 0
    epochs: int = 25
    lr: float = 1e-3
    finetune_lr: float | None = None   # lr of a two-stream model that starts from single-stream checkpoints
    milestones: tuple = (10, 20)       # lr x0.1 at these epochs
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 16               # sequences of `length` frames
    length: int = 64
    stride: int = 32
    patience: int = 5
    pretrain: bool = True              # streams=both without init checkpoints: train the single streams first
    init_spatial: str | None = None
    init_temporal: str | None = None
    skip_unusable: bool = False        # leave out (and list) videos whose cached arrays are unusable, not refuse
    augment: str | None = None         # "flip": mirrored inputs for a seeded half of the training sequences
    # runtime (RUNTIME): how the run is carried out, not part of its identity; device and threads change the
    # numbers all the same (metrics.json: threads_used)
    device: str = "cpu"
    num_workers: int = 2
    cache_mb: float = 64               # decoded-chunk cache per loader worker
    resume: bool = False               # continue OUT/last.pt; a different identity is an error
    reuse: bool = False                # sub-runs and ablation cells: reuse a finished run of the same identity,
    #                                    resume an unfinished one, else start afresh (and say why)
    stop_after: int | None = None      # run at most this many epochs now, then stop as if killed (resume later)
    plots: bool = True                 # curves.png and predictions.png (matplotlib)
    threads: int | None = None         # torch CPU threads (1 is fastest on a busy shared machine)
    quiet: bool = False

    def __post_init__(self):
        if self.augment in ("", "none"):   # as typed on a command line or in an ablation grid
            self.augment = None
        if isinstance(self.splits, str):   # "train,validation", as typed in an ablation grid
            self.splits = tuple(s.strip() for s in self.splits.split(",") if s.strip()) or None
        elif self.splits is not None:
            self.splits = tuple(self.splits) or None


# Settings that are not part of a run's identity: how a run is carried out. The init checkpoints enter the identity
# by their content hash instead of their path; `pretrain` by whether there are init checkpoints; `skip_unusable` by
# the videos it leaves out (the identity holds the video lists). The device and the thread count do change the
# numbers (CPU and CUDA round differently; torch's CPU reductions split their sums by thread, so runs with 1 and 2
# threads differ from the first epoch), but a run moved to another node or GPU is the same experiment: the trainer
# records both for each stretch of epochs (metrics.json: threads_used) and warns when a resume changes them.
RUNTIME = ("out", "device", "num_workers", "cache_mb", "resume", "reuse", "stop_after", "plots", "threads", "quiet",
           "init_spatial", "init_temporal", "pretrain", "skip_unusable")


def check(cfg: TrainConfig) -> None:
    """Reject settings no run can use, with the flag to change."""
    if cfg.streams not in ("both", "spatial", "temporal"):
        raise BadInputError(None, f"--streams {cfg.streams!r} is not both, spatial or temporal", "pick one of them")
    if not 1 <= cfg.window <= 32:
        raise BadInputError(None, f"--window {cfg.window} is out of range", "use 4..16 as in the paper")
    if cfg.arch not in ("paper", "released"):
        raise BadInputError(None, f"--arch {cfg.arch!r} is not paper or released", "pick one of them")
    variant = arrays.parse_input(cfg.input)[1]
    if cfg.augment not in (None, "flip"):
        raise BadInputError(None, f"--augment {cfg.augment!r} is not flip", "use --augment flip, or none")
    # a +flip input alone is a model of the mirrored faces (a check that they score as the clean ones do); with the
    # augmentation its "mirrored" half would read the very same arrays (mirroring twice is no flip): no augmentation
    if cfg.augment == "flip" and uses_temporal(cfg) and face_transforms.split_variant(variant)[1].flip:
        clean = cfg.input.split("@")[0] + (f"@{v}" if (v := face_transforms.without_flip(variant)) else "")
        raise BadInputError(None, f"--input {cfg.input} reads the mirrored faces' arrays already: with --augment flip "
                            "its mirrored half would read the same ones, and the temporal stream would not be augmented",
                            f"use --input {clean} --augment flip, or --input {cfg.input} without --augment")


def uses_spatial(cfg: TrainConfig) -> bool:
    """Whether the model has the spatial stream (reads resnet50)."""
    return cfg.streams in ("both", "spatial")


def uses_temporal(cfg: TrainConfig) -> bool:
    """Whether the model has the temporal stream (reads the motion arrays of --input)."""
    return cfg.streams in ("both", "temporal")


def used_arrays(cfg: TrainConfig) -> list[str]:
    """Cache arrays the model reads (besides valid/labels), variants included: ["resnet50", "dphase_s0@paper", ...]."""
    return (["resnet50"] if uses_spatial(cfg) else []) + \
        (list(arrays.input_arrays(cfg.input)) if uses_temporal(cfg) else [])


def as_dict(cfg: TrainConfig) -> dict:
    """The whole configuration as plain types (for metrics.json and checkpoints)."""
    d = asdict(cfg)
    d["milestones"] = [int(m) for m in cfg.milestones]
    d["splits"] = None if cfg.splits is None else list(cfg.splits)   # as JSON has it, so identities compare equal
    return d


def from_dict(d: dict) -> TrainConfig:
    """A TrainConfig from ``as_dict`` output (unknown keys of older versions ignored)."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: (tuple(v) if k == "milestones" else v) for k, v in d.items() if k in names})


def decisive(cfg: TrainConfig) -> dict:
    """The settings that decide a run's numbers (all but RUNTIME), the cache as an absolute path."""
    d = {k: v for k, v in as_dict(cfg).items() if k not in RUNTIME}
    d["cache"] = str(Path(cfg.cache).resolve())
    if cfg.streams != "both":
        d.pop("finetune_lr")   # used only by a two-stream run started from single-stream checkpoints
    return d


def differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two identities (nested dicts are compared key by key)."""
    out = []
    for k in sorted(set(saved) | set(now), key=str):
        a, b = saved.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict) and prefix.count(".") < 1:
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def describe(diff: list[str], saved: dict, now: dict, limit: int = 6) -> str:
    """'config.lr: 0.1 -> 0.05; fingerprints.dphase_s0: a -> b' for the first few differing keys."""
    def get(d, key):
        for part in key.split(".", 1):
            d = d.get(part) if isinstance(d, dict) else None
        return _short(d)
    parts = [f"{k}: {get(saved, k)} -> {get(now, k)}" for k in diff[:limit]]
    return "; ".join(parts) + (f"; and {len(diff) - limit} more" if len(diff) > limit else "")


def _short(v) -> str:
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."
