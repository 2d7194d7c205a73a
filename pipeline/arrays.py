"""One description per kind of cached array: its arrays, their dtype and shape, what they are computed from,
and the `features` flags that make them. Storing, planning, updating and loading derive from this table.

Naming, the contract between pipeline and trainer:

- A kind (``dphase``) has parts, the arrays of a video's group (``dphase_s0``, ``dphase_s1``).
- A kind with variants may be held in several named variants side by side: part P of variant NAME is the
  array ``P@NAME`` (``dphase_s0@paper``); the default variant has no suffix. Each array has its own fingerprint.
- A model input names a kind and an optional variant (``dphase``, ``dphase@paper``, ``flow``, ``resnet50@flip``);
  ``input_arrays`` maps it to the array names the loader reads.
- A variant name may compose a motion variant with face transforms (``paper+gamma0.2+flip``): the arrays computed
  from transformed cached faces (pipeline/face_transforms.py). flow takes transforms only, resnet50 flip only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from features.errors import BadInputError
from features.motion_config import MOTION_V1
from pipeline import face_transforms

# Variant names become parts of Zarr array names and of command lines: keep them plain.
VARIANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class Kind:
    """One kind of cached array."""

    name: str
    parts: dict[str, tuple[str, tuple[int, ...]]]   # array name -> (dtype, per-frame shape)
    source: str          # what it is computed from: "video" (decode + align), "face48", "face224", "labels"
    make: str            # what makes it: a stage ("stage:motion"), an extra ("extra:phase"), a flag or the labels
    variants: bool = False
    fill: float | bool = 0
    # The pipeline's code version of this kind: bump it whenever its output changes for the same settings
    # (tests/test_digests.py fails until you do; `pytest tests/test_digests.py --update-digests` records it).
    version: str = "1"
    # What its fingerprint is made of (pipeline/settings.py): "face" (tracker, landmark model sha256, smoothing,
    # gamma jitter), "encoder" (architecture, weights sha256), "motion" (MotionConfig of the variant), "flow"
    # (FlowConfig), "labels" (the label files). Every kind but labels also chains the face fingerprint.
    params: str = "face"


KINDS: dict[str, Kind] = {k.name: k for k in (
    # version 2: the landmark model's sha256 in the fingerprint; gamma jitter seeded per (video sha256, frame)
    Kind("face", {"valid": ("bool", ()), "landmarks": ("float32", (68, 2)), "face48": ("uint8", (48, 48))},
         "video", "stage:align", version="2", params="face"),
    Kind("face224", {"face224": ("uint8", (224, 224, 3))}, "video", "flag:--keep-faces", version="2", params="face"),
    Kind("resnet50", {"resnet50": ("float16", (2048,))}, "face224", "stage:spatial", variants=True,
         params="encoder"),
    Kind("dphase", {"dphase_s0": ("float16", (2, 48, 48)), "dphase_s1": ("float16", (2, 24, 24))}, "face48",
         "stage:motion", variants=True, params="motion"),
    Kind("phase", {"phase_s0": ("float16", (2, 48, 48)), "phase_s1": ("float16", (2, 24, 24))}, "face48",
         "extra:phase", variants=True, params="motion"),
    Kind("flow", {"flow": ("float16", (2, 48, 48))}, "face48", "extra:flow", variants=True, params="flow"),
    Kind("labels", {"labels": ("float32", (2,))}, "labels", "labels", params="labels"),
)}
# Built-in motion variants: name -> MotionConfig overrides. `features --motion-variant NAME` makes dphase@NAME
# (and phase@NAME with --extras phase); any other name is defined by the motion flags given with it.
MOTION_VARIANTS: dict[str, dict] = {
    "paper": {"variant": "paper"},   # the paper's and the released code's order: unwrap, blur phase, difference
    "v1": dict(MOTION_V1),   # mimamo's defaults before issue 17 (mean subtraction, no face window, sigma 2)
}
_KIND_OF_PART = {part: k for k in KINDS.values() for part in k.parts}
# Fill values of arrays whose rows are unknown: NaN for landmarks and labels, False for valid, else 0.
_FILL = {"landmarks": float("nan"), "labels": float("nan"), "valid": False}


def split_name(name: str) -> tuple[str, str | None]:
    """"dphase_s0@paper" -> ("dphase_s0", "paper"); "dphase_s0" -> ("dphase_s0", None)."""
    base, at, variant = name.partition("@")
    return base, (variant if at else None)


def array_name(part: str, variant: str | None = None) -> str:
    """The array name of one part of a kind in a variant (None: the default variant)."""
    return f"{part}@{variant}" if variant else part


def check_variant(variant: str) -> str:
    """A variant name as typed by a user; a bad one is a clear error."""
    if not VARIANT_RE.match(variant or ""):
        raise BadInputError(None, f"bad variant name {variant!r}",
                            "use letters, digits, '_', '.', '+' or '-' (at most 64), e.g. paper or mw9")
    return variant


def kind_of(name: str) -> Kind:
    """The kind an array name belongs to (its variant suffix ignored)."""
    base, variant = split_name(name)
    kind = _KIND_OF_PART.get(base)
    if kind is None:
        raise KeyError(f"unknown cache array {name!r}; known: {', '.join(_KIND_OF_PART)}")
    if variant is not None and not kind.variants:
        raise KeyError(f"array {name!r}: {kind.name} has no variants")
    return kind


def schema(name: str) -> tuple[str, tuple[int, ...]]:
    """(dtype, per-frame shape) of an array name, variants included."""
    base, _ = split_name(name)
    return kind_of(name).parts[base]


def fill_value(name: str):
    """The value of rows never written (NaN for landmarks and labels, False for valid, else 0)."""
    return _FILL.get(split_name(name)[0], 0)


def parse_input(text: str) -> tuple[Kind, str | None]:
    """A model input ("dphase", "dphase@paper", "resnet50@flip") -> (kind, variant); a bad one is a clear error."""
    name, at, variant = text.partition("@")
    kind = KINDS.get(name)
    if kind is None or kind.name in ("face", "face224", "labels"):
        raise BadInputError(None, f"unknown input {text!r}",
                            "use dphase, phase or flow, optionally with a variant: dphase@paper")
    if at:
        if not kind.variants:
            raise BadInputError(None, f"input {text!r}: {name} has no variants", f"use plain {name}")
        check_variant(variant)
        check_kind_variant(kind, variant)
    return kind, (variant if at else None)


def check_kind_variant(kind: Kind, variant: str) -> None:
    """What a kind's variant may hold: motion settings (dphase, phase), face transforms (not gamma for resnet50)."""
    motion, t = face_transforms.split_variant(variant)
    if motion is not None and kind.params != "motion":
        raise BadInputError(None, f"{kind.name}@{variant}: {kind.name} has no motion settings (only face transforms)",
                            f"use {kind.name}" + (f"@{face_transforms.transform_part(variant)}" if t else ""))
    if t.gamma and kind.params == "encoder":
        raise BadInputError(None, f"{kind.name}@{variant}: the gamma corruption applies to the 48x48 faces only",
                            f"use {kind.name} or {kind.name}@flip")


def input_arrays(text: str) -> tuple[str, ...]:
    """The array names a model input reads: "dphase@paper" -> ("dphase_s0@paper", "dphase_s1@paper")."""
    kind, variant = parse_input(text)
    return tuple(array_name(p, variant) for p in kind.parts)


def source_of(name: str) -> str:
    """What an array is computed from: "video", "face48", "face224" or "labels"."""
    return kind_of(name).source


def runs(names) -> list[list[str]]:
    """These arrays grouped by the `features` runs that make them, the default variant's run first.

    One run writes one motion variant (``--motion-variant NAME``: dphase@NAME, phase@NAME, flow under its face
    transforms, and with ``--extras flip`` their mirrored twins), so the motion and flow arrays of several variants
    are several runs: one command naming two variants would make only the last (click keeps an option's last value).
    The arrays every run writes alike (faces, labels, resnet50 and resnet50@flip) go with the first run, which makes
    a group anew from the video; each later run adds its variant from the cached faces."""
    names = list(dict.fromkeys(names))
    key: dict[str, str | None] = {}   # motion and flow arrays -> the variant of the run that writes them
    for name in names:
        kind, variant = kind_of(name), split_name(name)[1]
        if kind.params in ("motion", "flow"):
            key[name] = face_transforms.without_flip(variant) if variant else None
    named = sorted({k for n, k in key.items() if k is not None and kind_of(n).params == "motion"})
    for name, k in key.items():   # flow@gamma0.2 comes with any motion variant of the same transforms (make_flags)
        if kind_of(name).params == "flow" and k is not None:
            key[name] = next((r for r in named if face_transforms.motion_part(r) is not None
                              and face_transforms.transform_part(r) == k), k)
    order = sorted(set(key.values()), key=lambda k: (k is not None, k or "")) or [None]
    return [[n for n in names if key.get(n, order[0]) == k] for k in order] if names else []


def make_flags(names) -> list[str]:
    """The `features` flags that make these arrays, e.g. ["--stages", "align,motion", "--motion-variant", "paper"]."""
    stages, extras, flags, variants = ["align"], [], [], []
    for name in names:
        kind = kind_of(name)
        what, _, value = kind.make.partition(":")
        {"stage": stages, "extra": extras, "flag": flags}.get(what, []).append(value)
        variant = split_name(name)[1]
        if variant is not None:
            if face_transforms.split_variant(variant)[1].flip:   # an extra of the run that writes the unflipped arrays
                extras.append("flip")
            rest = face_transforms.without_flip(variant)
            if rest is not None:
                variants.append(rest)
    # flow@gamma0.2 (no motion settings) is written by a run of any motion variant with the same transforms
    covered = {face_transforms.transform_part(v) for v in variants if face_transforms.motion_part(v) is not None}
    variants = [v for v in variants if face_transforms.motion_part(v) is not None or v not in covered]
    out = ["--stages", ",".join(dict.fromkeys(stages))]
    if extras:
        out += ["--extras", ",".join(dict.fromkeys(extras))]
    for v in dict.fromkeys(variants):
        out += ["--motion-variant", v]
    return out + list(dict.fromkeys(flags))
