"""Transforms of the cached faces that make feature variants of their own: an illumination corruption (the paper's
Fig. 5) and the horizontal flip (the paper's augmentation).

A variant name composes an optional motion variant with face transforms, joined by '+' in one fixed order::

    [MOTION][+gammaB[sK]][+flip]      paper, gamma0.2, paper+gamma0.2, flip, paper+flip, gamma0.4s1+flip

- ``gammaB`` (0 < B < 1): each frame t of the 48x48 faces becomes 255 (u)^g, u = face/255, g ~ U[1-B, 1+B] drawn
  from (K, sha256 of the whole video id, t) (``pipeline.compute.frame_gammas``; K = 0 without ``sK``). Applied to
  the *cached* aligned faces: alignment saw the clean frames, so only the motion representation meets the
  corruption (``features --gamma-jitter`` instead corrupts the frames before alignment).
- ``flip``: the faces mirrored left-right (face48 and face224), and every feature computed from them exactly
  (mirroring the clean maps is not exact at the 24x24 scale, nor for the paper variant).

Gamma and flip commute exactly (one is per pixel, the other a permutation of pixels), so the fixed order loses
nothing. Each transform enters the fingerprint of the arrays it makes (``fingerprint_part``), so a transformed
array never passes for a clean one; an untransformed array's fingerprint is unchanged. ``gamma0`` would be the
clean faces: it is refused (use the plain input).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

import numpy as np

from features.errors import BadInputError

FLIP = "flip"
TRANSFORM_VERSION = "1"   # bump when what a transform does to the faces changes (cache fingerprints)
_GAMMA = re.compile(r"^gamma(?P<beta>[0-9.]+)(?:s(?P<seed>[0-9]+))?$")


@dataclass(frozen=True)
class FaceTransform:
    """What is done to a video's cached faces before a feature is computed from them (nothing by default)."""

    gamma: float = 0.0        # B: per-frame gamma g ~ U[1-B, 1+B]; 0 = none
    gamma_seed: int = 0       # K: the draws come from (K, sha256 of the video id, frame)
    flip: bool = False        # mirror left-right

    def __bool__(self) -> bool:
        return bool(self.gamma) or self.flip

    def tokens(self) -> list[str]:
        """The name's tokens in their fixed order: ["gamma0.2", "flip"]."""
        out = [gamma_token(self.gamma, self.gamma_seed)] if self.gamma else []
        return out + ([FLIP] if self.flip else [])

    def as_dict(self) -> dict:
        """Every setting plus the code version, for fingerprints."""
        return {**asdict(self), "version": TRANSFORM_VERSION}

    def apply(self, block: dict, video: str, start: int) -> dict:
        """A block of a video (frames start, start+1, ...) with face48 (and face224) transformed; others as given."""
        if not self:
            return block
        from pipeline.compute import jitter_frames

        out = dict(block)
        if "face48" in out and self.gamma:
            out["face48"] = jitter_frames(np.asarray(out["face48"]), self.gamma, self.gamma_seed, video, start)
        if "face224" in out and self.gamma:
            raise BadInputError(None, f"{gamma_token(self.gamma, self.gamma_seed)} corrupts the 48x48 faces only",
                                "the robustness experiment corrupts the temporal stream's input; resnet50 takes flip")
        if self.flip:
            if "face48" in out:
                out["face48"] = np.ascontiguousarray(np.asarray(out["face48"])[..., ::-1])   # [T, H, W]
            if "face224" in out:
                out["face224"] = np.ascontiguousarray(np.asarray(out["face224"])[:, :, ::-1])   # [T, H, W, 3]
        return out


def gamma_token(beta: float, seed: int = 0) -> str:
    """The name token of a gamma corruption: (0.2, 0) -> "gamma0.2", (0.2, 3) -> "gamma0.2s3"."""
    beta = float(beta)
    if not 0 < beta < 1:
        raise BadInputError(None, f"gamma corruption beta={beta:g} is not in (0, 1)",
                            "beta 0 is the clean input (use it without a gamma variant); beta must stay below 1")
    if int(seed) < 0:
        raise BadInputError(None, f"gamma seed {seed} is negative", "use a seed >= 0")
    return f"gamma{beta:g}" + (f"s{int(seed)}" if seed else "")


def is_transform_token(token: str) -> bool:
    """Whether a '+'-separated token of a variant name is a face transform (flip, gammaB[sK])."""
    return token == FLIP or bool(_GAMMA.match(token))


def split_variant(variant: str | None) -> tuple[str | None, FaceTransform]:
    """"paper+gamma0.2+flip" -> ("paper", FaceTransform(0.2, 0, True)); "flip" -> (None, flip); None -> (None, none).

    Tokens must be in the fixed order, each once, so every array has exactly one name; a bad name is a clear error.
    """
    if not variant:
        return None, FaceTransform()
    tokens = variant.split("+")
    motion = None if is_transform_token(tokens[0]) else tokens[0]
    rest = tokens[1:] if motion is not None else tokens
    t = FaceTransform()
    for tok in rest:
        m = _GAMMA.match(tok)
        if tok == FLIP and not t.flip:
            t = replace(t, flip=True)
        elif m and not t.gamma and not t.flip:
            try:
                beta = float(m["beta"])
            except ValueError:
                beta = float("nan")
            t = replace(t, gamma=beta, gamma_seed=int(m["seed"] or 0))
            canonical = gamma_token(beta, t.gamma_seed) if 0 < beta < 1 else None
            if canonical != tok:
                raise BadInputError(None, f"variant {variant!r}: {tok!r} is not a gamma corruption name",
                                    f"write gammaB with 0 < B < 1 as Python's '%g' prints it{f', here {canonical}' if canonical else ''}")
        else:
            raise BadInputError(None, f"variant {variant!r}: {tok!r} is not a face transform in its place",
                                "write [MOTION][+gammaB[sK]][+flip], each once and in this order, e.g. paper+gamma0.2+flip")
    return motion, t


def join_variant(motion: str | None, t: FaceTransform) -> str | None:
    """The inverse of ``split_variant``: ("paper", flip) -> "paper+flip"; (None, none) -> None."""
    tokens = ([motion] if motion else []) + t.tokens()
    return "+".join(tokens) or None


def with_flip(variant: str | None) -> str:
    """The variant of the mirrored faces: None -> "flip", "paper" -> "paper+flip", "gamma0.2" -> "gamma0.2+flip"."""
    motion, t = split_variant(variant)
    return join_variant(motion, replace(t, flip=True))


def without_flip(variant: str | None) -> str | None:
    """The variant of the unmirrored faces: "paper+flip" -> "paper", "flip" -> None."""
    motion, t = split_variant(variant)
    return join_variant(motion, replace(t, flip=False))


def with_gamma(variant: str | None, beta: float, seed: int = 0) -> str | None:
    """The variant corrupted by a gamma of ``beta`` (beta 0: the variant itself): "paper", 0.2 -> "paper+gamma0.2"."""
    if not beta:
        return variant
    motion, t = split_variant(variant)
    return join_variant(motion, replace(t, gamma=float(beta), gamma_seed=int(seed)))


def motion_part(variant: str | None) -> str | None:
    """The motion variant a name starts with ("paper+flip" -> "paper"; "flip" -> None)."""
    return split_variant(variant)[0]


def transform_part(variant: str | None) -> str | None:
    """The face transforms of a name as a variant of their own ("paper+gamma0.2" -> "gamma0.2"; "paper" -> None)."""
    return join_variant(None, split_variant(variant)[1])


def check_motion_name(variant: str) -> None:
    """A motion variant's own name must not look like a face transform (it would be read as one)."""
    if is_transform_token(variant):
        raise BadInputError(None, f"motion variant name {variant!r} is a face transform's name",
                            "pick another name for these motion settings")


def fingerprint_part(variant: str | None) -> tuple:
    """What a variant's face transforms add to its arrays' fingerprints: () without transforms (unchanged)."""
    t = split_variant(variant)[1]
    return ({"face_transform": t.as_dict()},) if t else ()


class Transformed:
    """A computer (pipeline.compute) fed with transformed faces; counts the frames it has seen (gamma is per frame)."""

    def __init__(self, inner, transform: FaceTransform, video: str):
        self.inner, self.transform, self.video, self.start = inner, transform, video, 0
        self.names = inner.names

    def __call__(self, block: dict) -> dict[str, np.ndarray]:
        # only the keys the inner computer reads: a block decoded from the video carries face224 beside face48, which
        # a motion computer of a gamma variant never reads and apply refuses to corrupt (resnet50 takes no gamma)
        block_in = {k: block[k] for k in self.inner.reads if k in block}
        out = self.inner(self.transform.apply(block_in, self.video, self.start))
        self.start += len(block["valid"])
        return out

    @property
    def key(self) -> str:
        """Names the computer in a progress record (pipeline/resume.py)."""
        return self.inner.key

    def snapshot(self) -> dict:
        """What the inner computer carries to the next block."""
        return self.inner.snapshot()

    def restore(self, last_face, last_valid: bool, snap: dict, frames: int) -> None:
        """Continue a resumed video at frame `frames`: the inner computer gets the last face transformed, as it saw it."""
        face = self.transform.apply({"face48": np.asarray(last_face)[None]}, self.video, frames - 1)["face48"][0]
        self.inner.restore(face, last_valid, snap, frames)
        self.start = frames


def wrap(computer, variant: str | None, video: str):
    """The computer of a variant: fed with the variant's transformed faces when it has transforms."""
    t = split_variant(variant)[1]
    if t.gamma and not video:
        raise ValueError(f"variant {variant!r}: the gamma draws need the video id")
    return Transformed(computer, t, video) if t else computer
