"""Horizontal-flip augmentation (the paper's and its released code's): a seeded half of the training sequences of each
epoch read the arrays of the mirrored faces instead of the clean ones.

The mirrored arrays are computed exactly from mirrored faces by `features --extras flip` (``resnet50@flip``,
``dphase_s0@flip``, ``dphase_s0@paper+flip``, ...: pipeline/face_transforms.py), never derived from the clean maps
(that rule is off by ~20% at the 24x24 scale and fails for the paper variant). Which sequences are flipped depends on
(seed, epoch, item) only, so a resumed run flips the same ones; `augment` is part of the run's identity. Validation
and test sequences are never flipped. Labels do not change: a mirrored face shows the same emotion.
"""
from __future__ import annotations

import numpy as np

from pipeline import arrays, face_transforms
from train.config import TrainConfig, used_arrays
from train.data import SequenceDataset

_SALT = 0x666C6970   # "flip": the flip draws never coincide with the shuffle's


def flipped_name(name: str) -> str:
    """The array of the mirrored faces: "dphase_s0@paper" -> "dphase_s0@paper+flip", "resnet50" -> "resnet50@flip"."""
    base, variant = arrays.split_name(name)
    return arrays.array_name(base, face_transforms.with_flip(variant))


def extra_arrays(cfg: TrainConfig) -> list[str]:
    """The arrays an augmented run reads besides the model's inputs (none without augmentation)."""
    return [flipped_name(n) for n in used_arrays(cfg)] if cfg.augment == "flip" else []


def flipped_items(n: int, seed: int, epoch: int) -> np.ndarray:
    """bool [n]: which of an epoch's n training sequences are mirrored: exactly n // 2, drawn from (seed, epoch)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF, int(epoch), _SALT])
    return rng.permutation(n) < n // 2


class FlipSequences(SequenceDataset):
    """Training sequences, a seeded half of them read from the mirrored faces' arrays (set_epoch picks the half)."""

    def __init__(self, *args, seed: int = 0, **kw):
        super().__init__(*args, **kw)
        self.seed = seed
        self.flipped_motion = tuple(flipped_name(n) for n in self.motion)
        self.flipped = flipped_items(len(self), seed, 0)

    def set_epoch(self, seed: int, epoch: int) -> None:
        """Draw this epoch's mirrored half (call before the epoch's loader is made: its workers copy the dataset)."""
        super().set_epoch(seed, epoch)
        self.seed, self.epoch = int(seed), int(epoch)
        self.flipped = flipped_items(len(self), self.seed, self.epoch)

    def arrays_for(self, i: int) -> tuple[str, tuple[str, ...]]:
        if self.flipped[i]:
            return flipped_name("resnet50"), self.flipped_motion
        return super().arrays_for(i)


def train_dataset_class(cfg: TrainConfig):
    """The dataset class of a run's training sequences (called with SequenceDataset's arguments)."""
    if cfg.augment != "flip":
        return SequenceDataset
    return lambda *a, **kw: FlipSequences(*a, seed=cfg.seed, **kw)
