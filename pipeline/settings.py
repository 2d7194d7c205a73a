"""What a `features` run asks for (Settings), which arrays that means, and the fingerprint each must carry.

The arrays and what their fingerprints are made of come from `pipeline.arrays.KINDS`; this module turns a run's
settings into {array name: fingerprint}. What enters a fingerprint, and why:

- face (valid, landmarks, face48, face224): the kind's code version and where the faces come from (`--faces`).
  The video path: the tracker's parameters, the sha256 of the dlib landmark model file (a different file with the
  same name gives other landmarks), the landmark smoothing, and the gamma jitter with its seed (this formula is the
  one of caches made before the source was recorded, so they stay valid; its tracker side "largest" stands for the
  side rule). OpenFace CSVs: the source, the reader's parameters with the side rule, the smoothing and the jitter.
  Organiser crops: the source and the crop reader's parameters. The entry's own side and the identity of the crop
  folder or CSV it read are recorded in its group and compared by every run (pipeline/faces.py says why).
- resnet50: its code version, the architecture and the weights' sha256 (or the seed of random weights), the face's.
- dphase/phase (any variant): the kind's code version, the variant's whole MotionConfig (which carries
  features.motion.MOTION_VERSION, the maths' version), the face's.
- flow: its code version, the FlowConfig (with MOTION_VERSION), the face's.
- a variant with face transforms (``dphase@paper+gamma0.2``, ``resnet50@flip``; pipeline/face_transforms.py) adds
  the transforms' settings to its kind's fingerprint; arrays without transforms keep theirs unchanged.
- labels: the sha256 of each label file's contents (not its path or mtime: a moved root holds the same labels) and
  the video-level labels.

Not in fingerprints: how the work runs (device, threads, workers, scheduler, --chunk-frames): the same maths on CPU or CUDA differs
in float rounding only. Library versions (torch, OpenCV, dlib, numpy) are recorded in each group's attrs (`libraries`) but are not part of
the fingerprints: a routine upgrade would otherwise throw away a cache that took days to build, and the pinned
versions are what the stage digests (tests/test_digests.py) check: an upgrade that changes a stage's output fails
that test, and the stage's version is then bumped, which does invalidate the cache.
"""
from __future__ import annotations

import importlib.metadata as md
from dataclasses import asdict, dataclass, field
from pathlib import Path

from features.errors import BadInputError
from pipeline import arrays, face_transforms, store
from pipeline.manifest import VideoEntry

STAGES = ("align", "motion", "spatial")
EXTRAS = ("phase", "flow", "flip")   # flip: the arrays of the mirrored faces, beside those the run writes
MOTION_EXTRAS = ("phase", "flow")
MOTION_FLAG_NAMES = {"mean_window": "mw", "sigma": "sigma", "taps": "taps", "amplitude": "amp", "clamp": "clamp",
                     "rigid": "rigid", "rigid_iterations": "it"}


@dataclass(frozen=True)
class Settings:
    """Everything that decides what a video's arrays contain (and so their fingerprints), plus how to run."""

    stages: tuple[str, ...] = ("align", "motion", "spatial")
    extras: tuple[str, ...] = ()              # "phase", "flow": ablation inputs; "flip": mirrored faces' arrays
    weights: str = "random"                   # path to resnet50_ferplus_dag.pth, or "random"
    keep_faces: bool = False                  # store face224 (lets spatial features be redone without video)
    gamma_jitter: float = 0.0                 # paper Fig. 5: per-frame gamma u^g, g ~ U[1-b, 1+b]
    seed: int = 0
    motion: dict = field(default_factory=dict)   # MotionConfig overrides of the motion variant below
    face: dict = field(default_factory=dict)     # FaceTracker overrides
    align_smooth: float = 1.5                 # sigma (frames) of the zero-phase landmark smoothing before alignment
    device: str = "cpu"
    threads: int = 1                          # torch threads per task
    motion_variant: str | None = None         # None: the default variant (plain dphase, default MotionConfig)
    faces: str = "video"                      # where faces come from: video | cropped_aligned | openface
    faces_dir: str | None = None              # the crop folders' or the OpenFace CSVs' folder
    label_slack: int = 0                      # frames by which labels, crops or CSVs may differ from the video
    chunk_frames: int = 256                   # frames per block, the unit a lost worker's video resumes from:
    #                                           how to run, not what is made (no array depends on it)

    def __post_init__(self):
        from pipeline.faces import FACE_SOURCES

        if self.faces not in FACE_SOURCES:
            raise BadInputError(None, f"unknown face source {self.faces!r}", f"use one of {', '.join(FACE_SOURCES)}")
        if self.faces != "video" and not self.faces_dir:
            raise BadInputError(None, f"--faces {self.faces} needs the folder it reads",
                                "pass --crops-dir DIR" if self.faces == "cropped_aligned" else "pass --openface-dir DIR")
        if self.faces == "cropped_aligned" and self.gamma_jitter:
            raise BadInputError(None, "--gamma-jitter corrupts video frames before alignment; organiser crops have "
                                "no frames", "use --faces video or openface, or the `robustness` experiment on "
                                "cached faces")
        if self.chunk_frames < 32 or self.chunk_frames % 32:
            raise BadInputError(None, f"--chunk-frames {self.chunk_frames} is not a positive multiple of 32",
                                "give e.g. 256 (the default), 128 or 64")
        if self.label_slack < 0:
            raise BadInputError(None, f"--label-slack {self.label_slack} is negative", "give a number of frames >= 0")
        if self.motion and self.motion_variant is None:
            # plain dphase always means the default MotionConfig: a changed setting is a named variant
            raise BadInputError(None, f"motion settings {self.motion} change ΔPhase, and plain dphase always means "
                                "the default settings", f"name this variant: --motion-variant {suggest_name(self.motion)}")
        if self.motion_variant is not None:
            arrays.check_variant(self.motion_variant)

    def motion_kinds(self) -> list[str]:
        """Which motion kinds to compute: dphase (with the motion stage) and the extras."""
        return (["dphase"] if "motion" in self.stages else []) + [e for e in self.extras if e in MOTION_EXTRAS]


def suggest_name(overrides: dict) -> str:
    """A variant name from motion settings: {"mean_window": 9} -> "mw9"; the settings of a built-in variant -> its
    name ({"variant": "paper"} -> "paper")."""
    try:
        cfg = motion_config(overrides)
        for name, builtin in arrays.MOTION_VARIANTS.items():
            if motion_config(builtin) == cfg:
                return name
    except BadInputError:
        pass

    def part(k, v) -> str:
        if k == "window":
            return "win" if v is not None else "nowin"
        return f"{MOTION_FLAG_NAMES.get(k, k)}{v:g}" if isinstance(v, float) else f"{MOTION_FLAG_NAMES.get(k, k)}{v}"

    return "-".join(part(k, v) for k, v in sorted(overrides.items())).replace("_", "") or "mine"


def variant_for(kind: arrays.Kind, s: Settings) -> str | None:
    """The variant this run writes for a kind: the motion variant for the kinds MotionConfig decides, else none.

    flow has no motion settings, so it is the same array whatever the motion variant: it stays plain `flow`, or
    takes the variant's face transforms only (`--motion-variant paper+gamma0.2` writes `flow@gamma0.2`).
    """
    if kind.params == "motion":
        return s.motion_variant
    return face_transforms.transform_part(s.motion_variant) if kind.params == "flow" else None


def motion_by_variant(s: Settings) -> dict[str | None, dict]:
    """MotionConfig overrides of each motion variant this run writes (its flipped variant has the same)."""
    out = {s.motion_variant: dict(s.motion)}
    if "flip" in s.extras:
        out[face_transforms.with_flip(s.motion_variant)] = dict(s.motion)
    return out


def wanted_arrays(s: Settings) -> list[str]:
    """The arrays a run with these settings writes, in a fixed order (face arrays first, labels last)."""
    on = {"stage": set(s.stages) | {"align"}, "extra": set(s.extras),
          "flag": {"--keep-faces"} if s.keep_faces else set(), "labels": {""}}
    out = []
    for kind in arrays.KINDS.values():
        what, _, value = kind.make.partition(":")
        if value in on[what]:
            variant = variant_for(kind, s)
            out += [arrays.array_name(p, variant) for p in kind.parts]
            if "flip" in s.extras and kind.variants:
                out += [arrays.array_name(p, face_transforms.with_flip(variant)) for p in kind.parts]
    return out


# ---------------------------------------------------------------- fingerprints

_MODEL_SHA: dict[tuple, str] = {}


def landmark_model_sha256() -> str:
    """sha256 of dlib's 68-landmark model file (hashed once per process and file version)."""
    from features.backbone import sha256_file
    from features.face import model_path

    path = model_path()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _MODEL_SHA:
        _MODEL_SHA[key] = sha256_file(path)
    return _MODEL_SHA[key]


def face_fingerprint(s: Settings) -> str:
    """The fingerprint of valid, landmarks, face48 (and face224): its source is part of it."""
    from features.face import FaceTracker
    from features.smooth_align import SmoothAligner
    from pipeline.faces import SIDE_RULE

    version = arrays.KINDS["face"].version
    jitter = {"gamma_jitter": s.gamma_jitter, "seed": s.seed if s.gamma_jitter else None}
    tracker = FaceTracker(**s.face)
    if s.faces == "cropped_aligned":
        from features.aligned_crops import crop_params

        return store.fingerprint("face", version, {"faces": "cropped_aligned"},
                                 crop_params(tracker.crop_size, tracker.gray_size))
    if s.faces == "openface":
        from features.openface import openface_params

        return store.fingerprint("face", version, {"faces": "openface"},
                                 openface_params(SIDE_RULE, tracker.crop_size, tracker.gray_size, tracker.scale),
                                 SmoothAligner(s.align_smooth).params, jitter)
    return store.fingerprint("face", version, tracker.params, {"predictor_sha256": landmark_model_sha256()},
                             SmoothAligner(s.align_smooth).params, jitter)


def motion_config(overrides: dict):
    """The MotionConfig of a variant's overrides; a setting this version does not know is a clear error."""
    from features.motion import MotionConfig

    try:
        return MotionConfig(**overrides)
    except TypeError as e:   # e.g. {"variant": "paper"} before features.motion knows that setting
        raise BadInputError(None, f"motion settings {overrides} are not known to features.motion ({e})",
                            "update mimamo, or use another --motion-variant") from None
    except ValueError as e:
        raise BadInputError(None, f"bad motion settings {overrides}: {e}", "fix the --motion-* flags") from None


def array_fingerprint(name: str, face_fp: str, motion: dict | None = None, encoder_fp: dict | None = None) -> str:
    """The fingerprint of one derived array (not face, not labels) given the face's and its own settings."""
    kind = arrays.kind_of(name)
    transform = face_transforms.fingerprint_part(arrays.split_name(name)[1])   # () without face transforms
    if kind.params == "motion":
        return store.fingerprint(kind.name, kind.version, motion_config(motion or {}).as_dict(), face_fp, *transform)
    if kind.params == "flow":
        from features.motion import FlowConfig
        return store.fingerprint(kind.name, kind.version, FlowConfig().as_dict(), face_fp, *transform)
    if kind.params == "encoder":
        return store.fingerprint("spatial", kind.version, encoder_fp, face_fp, *transform)
    raise KeyError(f"{name}: not a derived array")


def fingerprints(s: Settings, entry: VideoEntry, encoder_fp: dict | None = None) -> dict[str, str]:
    """The fingerprint each array of this video must carry under these settings."""
    face = face_fingerprint(s)
    out = {}
    for name in wanted_arrays(s):
        params = arrays.kind_of(name).params
        if params == "face":
            out[name] = face
        elif params == "labels":
            out[name] = store.labels_fingerprint(entry.label_files, entry.video_labels)
        else:
            enc = (encoder_fp or encoder_fingerprint(s)) if params == "encoder" else None
            out[name] = array_fingerprint(name, face, s.motion, enc)
    return out


def encoder_fingerprint(s: Settings) -> dict:
    """The spatial encoder's fingerprint without loading the network (weights are hashed, not read into torch)."""
    from features.backbone import ARCH, resolve_weights, sha256_file

    if s.weights == "random":
        return {"architecture": ARCH, "weights": f"random:seed={s.seed}"}
    path = resolve_weights(s.weights)
    if not Path(path).is_file():
        from pipeline.compute import get_encoder
        get_encoder(s)   # raises the encoder's own message: where to put the file
    return {"architecture": ARCH, "weights": f"sha256:{sha256_file(path)}"}


# ---------------------------------------------------------------- what made each array (group attrs)


def made_with(s: Settings, names) -> dict[str, dict]:
    """Per array, the settings that made it (group attrs["made_with"]): lets `predict` rebuild a variant."""
    out = {}
    for name in names:
        params = arrays.kind_of(name).params
        if params == "face":
            out[name] = {"face": dict(s.face), "align_smooth": s.align_smooth, "gamma_jitter": s.gamma_jitter,
                         "seed": s.seed, "faces": s.faces}
        elif params == "motion":
            out[name] = {"motion_variant": arrays.split_name(name)[1], "motion": dict(s.motion)}
        elif params == "encoder":
            out[name] = {"weights": s.weights, "seed": s.seed}
        else:
            out[name] = {}
    return out


def settings_for(attrs: dict, names, weights: str | None = None, device: str = "cpu") -> Settings:
    """Settings that rebuild these arrays as a group's attrs say they were made (for `predict` on new videos).

    `names` are the arrays a model reads, e.g. ("resnet50", "dphase_s0@paper", "dphase_s1@paper").
    """
    names = list(names)
    base = dict(attrs.get("settings") or {})
    made = dict(attrs.get("made_with") or {})
    face = next((made[n] for n in ("face48", "valid") if n in made), None) or base
    kinds = [arrays.kind_of(n) for n in names]
    motion_names = [n for n, k in zip(names, kinds) if k.params == "motion"]
    variants = {arrays.split_name(n)[1] for n in motion_names}
    if len(variants) > 1:
        raise BadInputError(None, f"arrays of several motion variants {sorted(map(str, variants))}",
                            "one model reads one motion variant")
    variant = variants.pop() if variants else None
    # flow has no motion settings, but its face transforms are its own (flow@gamma0.2): the run writes them from the
    # motion variant's transform part (variant_for), so they must be in the variant, or plain flow would be extracted
    flow = {face_transforms.transform_part(arrays.split_name(n)[1]) for n, k in zip(names, kinds) if k.params == "flow"}
    if len(flow) > 1 or (flow and variant is not None and flow != {face_transforms.transform_part(variant)}):
        raise BadInputError(None, f"arrays of several face transforms: flow's {sorted(map(str, flow))}, motion "
                            f"variant {variant!r}", "one model reads one motion variant")
    if flow and variant is None:
        variant = flow.pop()
    motion = dict((made.get(motion_names[0]) or {}).get("motion", {})) if motion_names else {}
    if motion_names and motion_names[0] not in made:   # a group from before made_with: its run's settings
        motion = dict(base.get("motion") or {})
    enc = made.get("resnet50") or base
    return Settings(stages=tuple(dict.fromkeys(["align"] + [k.make.split(":")[1] for k in kinds
                                                            if k.make.startswith("stage:")])),
                    extras=tuple(dict.fromkeys(k.name for k in kinds if k.make.startswith("extra:"))),
                    weights=str(weights if weights is not None else enc.get("weights", "random")),
                    keep_faces=False, gamma_jitter=float(face.get("gamma_jitter", 0.0)),
                    seed=int(enc.get("seed", face.get("seed", 0))), motion=motion, face=dict(face.get("face") or {}),
                    align_smooth=float(face.get("align_smooth", 1.5)), device=device, motion_variant=variant)


def libraries() -> dict[str, str]:
    """Versions of the libraries that compute the arrays (provenance in group attrs, not in fingerprints)."""
    out = {}
    for dist in ("torch", "numpy", "opencv-python-headless", "dlib-bin", "zarr"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def as_attrs(s: Settings) -> dict:
    """Settings as JSON-able group attrs."""
    return asdict(s)
