"""Horizontal-flip augmentation (the paper's and its released code's): a seeded half of the training sequences of each
epoch read the arrays of the mirrored faces instead of the clean ones.

The mirrored arrays are computed exactly from mirrored faces by `features --extras flip` (``resnet50@flip``,
``dphase_s0@flip``, ``dphase_s0@paper+flip``, ...: pipeline/face_transforms.py), never derived from the clean maps
(that rule is off by ~20% at the 24x24 scale and fails for the paper variant). Which sequences are flipped depends on
(seed, epoch, item) only, so a resumed run flips the same ones; `augment` is part of the run's identity. Validation
and test sequences are never flipped. Labels do not change: a mirrored face shows the same emotion.

A mirrored array must be made exactly as its clean one but for the mirror (``check_pairs``): a `features` run that
remade the clean arrays under other motion settings, weights or code, and left the mirrored ones, would have half the
training sequences read other features than the rest, under fingerprints that each look fine on their own.
"""
from __future__ import annotations

import numpy as np

from features.errors import BadInputError
from pipeline import arrays, face_transforms, settings, store
from pipeline.uniform import listing
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


def check_pairs(cfg: TrainConfig, videos) -> None:
    """Refuse an augmented run when a mirrored array (``resnet50@flip``, ``dphase_s0@mw9+flip``) was made under other
    settings than its clean array in any of ``videos``: motion settings, weights, code version, faces: everything its
    fingerprint holds but the mirror. Names both arrays, both settings and the `features` command that remakes the
    mirrored ones like the clean ones."""
    if cfg.augment != "flip":
        return
    found: dict[tuple, list[str]] = {}
    for video in videos:
        attrs = store.open_video(cfg.cache, cfg.dataset, video).attrs
        fps, made = dict(attrs.get("fingerprints") or {}), dict(attrs.get("made_with") or {})
        for clean in used_arrays(cfg):
            why = pair_difference(clean, flipped_name(clean), fps, made)
            if why is not None:
                found.setdefault((clean, *why), []).append(video)
    if not found:
        return
    (clean, text, replace_variant, weights), vids = next(iter(found.items()))
    flips = list(dict.fromkeys(flipped_name(c) for c, *_ in found))
    more = f"; the same for {', '.join(flips[1:])}" if len(flips) > 1 else ""
    command = store.repair_command(cfg.cache, cfg.dataset, flips, (["--replace-variant"] if replace_variant else [])
                                   + (["--weights", weights] if weights is not None else []))
    raise BadInputError(store.dataset_dir(cfg.cache, cfg.dataset), f"--augment flip: {text} (videos {listing(vids)})"
                        f"{more}; half the training sequences would read features made otherwise than the rest",
                        f"remake the mirrored arrays with the clean ones' settings: `{command}`")


def _own(made: dict | None) -> dict | None:
    """What made an array, without its name's variant and the pair record (what a clean and a mirrored array share)."""
    return None if made is None else {k: v for k, v in made.items() if k not in ("motion_variant", "clean_fingerprint")}


def pair_difference(clean: str, flip: str, fps: dict, made: dict) -> tuple[str, bool, str | None] | None:
    """None when the mirrored array ``flip`` was made like ``clean`` (as far as the group records it); else (what
    differs, whether the motion settings do (the remake needs --replace-variant), the clean one's --weights when the
    weights do)."""
    a, b = _own(made.get(clean)), _own(made.get(flip))
    if a is not None and b is not None and a != b:
        weights = a.get("weights") if a.get("weights") != b.get("weights") else None
        return (f"{flip} was made with {_settings(b)}, {clean} with {_settings(a)}",
                a.get("motion") != b.get("motion"), weights)
    record = (made.get(flip) or {}).get("clean_fingerprint")   # features records it beside each mirrored array
    if record is not None:
        if record == fps.get(clean):
            return None
        return (f"{flip} was made beside a {clean} of fingerprint {record}, and {clean} has been remade since "
                f"(now {fps.get(clean)}: other code, weights or faces)", False, None)
    # groups made before that record: the fingerprints the recorded settings give under the code as it is now
    ok = {name: _reproduces(name, fps, m) for name, m in ((clean, a), (flip, b if b is not None else a))}
    if None in ok.values() or ok[clean] == ok[flip]:
        return None   # both current, or both of older code (made by one run as far as can be told), or unknowable
    old, new = (flip, clean) if ok[clean] else (clean, flip)
    return (f"{old} was made by another code version (or weights file or faces) than {new}: its fingerprint "
            f"{fps.get(old)} is not the one its recorded settings give now, {new}'s is", False, None)


def _settings(made: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(made.items())) or "no recorded settings"


def _reproduces(name: str, fps: dict, made: dict | None) -> bool | None:
    """Whether the array's fingerprint is the one its recorded settings and faces give under this code (None: cannot
    tell, e.g. weights from a file, whose sha256 is not recorded)."""
    face = fps.get("face48") or fps.get("valid")
    if made is None or face is None or name not in fps:
        return None
    try:
        params = arrays.kind_of(name).params
        if params == "motion":
            want = settings.array_fingerprint(name, face, dict(made.get("motion") or {}))
        elif params == "flow":
            want = settings.array_fingerprint(name, face)
        elif params == "encoder" and made.get("weights") == "random":
            enc = settings.encoder_fingerprint(settings.Settings(weights="random", seed=int(made.get("seed", 0))))
            want = settings.array_fingerprint(name, face, encoder_fp=enc)
        else:
            return None
    except (BadInputError, KeyError, TypeError, ValueError):   # settings this code no longer knows
        return None
    return want == fps[name]


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
