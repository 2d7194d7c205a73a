"""Where a video's arrays come from, block by block: the video (decode, track, align) or the cached faces.

A block is a dict of per-frame arrays of at most CHUNK_T frames: ``valid``, ``landmarks``, ``face48``, ``face224``
from the video; ``valid``, ``face48`` (and ``face224``) read back from the group. Computers turn blocks into the
derived arrays (ΔPhase, phase, flow of a motion variant; ResNet50 features). Memory is bounded by the decode chunk
plus one block, whatever the video's length.
"""
from __future__ import annotations

import base64
import hashlib

import numpy as np

from features.errors import BadInputError
from pipeline import arrays, chunks, store
from pipeline.manifest import VideoEntry

DECODE_CHUNK = 32   # raw frames held at once: 32 x 1920x1080x3 is 200 MB, the largest buffer a worker holds
# ResNet50 batches are the valid faces of frames [32j, 32j+32): CPU convolutions round differently with the batch's
# make-up, so batches fixed by frame number keep resnet50 the same however a video is cut into blocks or resumed.
ENCODE_WINDOW = 32
# ΔPhase and phase go through the pyramid in batches of MOTION_BATCH frames fixed by frame number (blocks start at
# multiples of it), so every frame sits in the same column of the same product however the video is blocked. With
# the default batch (256) a full block's last frame sits in the product's last column, which rounds differently
# (measured, MKL: blocks of 256 and of 32 differed at frames 255, 511 of dphase_s1). 32 was as fast as 256 on one
# CPU thread here (0.75 s vs 0.9-1.3 s for 512 frames).
MOTION_BATCH = 32


# ---------------------------------------------------------------- gamma jitter (paper Fig. 5)


def frame_rng(seed: int, video: str, frame: int) -> np.random.Generator:
    """The generator of one frame's gamma: seeded by (seed, sha256 of the whole video id, frame index) only."""
    words = np.frombuffer(hashlib.sha256(video.encode()).digest(), dtype="<u4").tolist()
    seed_words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF]
    return np.random.default_rng([*seed_words, *words, int(frame)])


def frame_gammas(b: float, seed: int, video: str, frames) -> np.ndarray:
    """The gamma g ~ U[1-b, 1+b] of each frame index, as `jitter_frames` applies it.

    Each frame's draw depends on nothing else (not on how the video was cut into chunks), so a resumed or
    re-decoded video gets the same gammas, and two videos whose ids share a prefix get different ones.
    """
    return np.array([frame_rng(seed, video, t).uniform(1 - b, 1 + b, size=1)[0] for t in frames])


def jitter_frames(images: np.ndarray, b: float, seed: int, video: str, start: int) -> np.ndarray:
    """Gamma-corrupt frames start, start+1, ... of a video (uint8 [T, ...]), each with its own frame's gamma."""
    from features.motion import gamma_jitter

    out = np.empty_like(images)
    for i in range(len(images)):   # one draw per call: frame i's gamma comes from its own generator
        out[i:i + 1] = gamma_jitter(images[i:i + 1], b, frame_rng(seed, video, start + i))
    return out


# ---------------------------------------------------------------- sources


def video_blocks(entry: VideoEntry, s, report, tracker=None, notes: dict | None = None, start: int = 0,
                 resume: dict | None = None):
    """Decode, track, and align (from time-smoothed landmarks) in blocks of `s.chunk_frames` frames, DECODE_CHUNK
    frames at a time.

    The tracker is dlib's (features.face.FaceTracker, following the entry's side: the largest face, or one person of
    a two-person video) unless another with its interface is given (features.openface.OpenFaceLandmarks); one with
    `finish()` is asked after the last frame how many frames its input had beyond the video (notes). A video that
    decodes to clearly fewer frames than its header declares (features.video: truncated) sets notes
    ``declared_frames`` and ``decoded_frames``.

    Each block but the last carries ``resume``: the tracker's state after the block's last frame, which is where a
    lost worker's video resumes (pipeline/resume.py). To resume at frame `start`, `resume` holds that state and
    the raw ``landmarks``/``valid`` rows just before it (the smoother's history), read back from the cache.
    """
    from features.face import AlignedFaces, FaceTracker
    from features.smooth_align import SmoothAligner
    from features.video import iter_chunks, probe

    if entry.path is None:
        raise BadInputError(None, f"{entry.video}: no video file", "these faces need the video; use --faces "
                            "cropped_aligned where only the organiser crops are at hand")
    probe(entry.path)   # an unreadable file fails here with the decoder's message, before any work
    tracker = tracker if tracker is not None else FaceTracker(**{**s.face, "side": entry.side})
    aligner = SmoothAligner(s.align_smooth, crop_size=tracker.crop_size, gray_size=tracker.gray_size,
                            scale=tracker.scale)
    if resume is not None:
        tracker.restore(resume["tracker"])
        aligner.resume(resume["landmarks"], resume["valid"])
    size = chunk_frames(s)
    parts, n, decoded, emitted, states = [], 0, start, start, {}

    def blocks(done: AlignedFaces | None, final: bool = False):
        nonlocal parts, n, emitted
        if done is not None and len(done):
            parts.append(done)
            n += len(done)
        while n >= size or (final and n):
            block = AlignedFaces.concat(parts)
            k = min(size, n)
            emitted += k
            yield {"valid": block.valid[:k], "landmarks": block.landmarks[:k], "face48": block.face48[:k],
                   "face224": block.face224[:k], "resume": states.pop(emitted, None)}
            rest = AlignedFaces(block.landmarks[k:], block.valid[k:], block.face224[k:], block.face48[k:])
            parts, n = ([rest] if len(rest) else []), len(rest)

    for chunk in iter_chunks(entry.path, DECODE_CHUNK, start=start):
        if chunk.truncated and notes is not None:   # fewer frames than the header declares: extract.build says so
            notes.update(declared_frames=chunk.announced, decoded_frames=chunk.start + len(chunk.frames))
        frames = chunk.frames
        if s.gamma_jitter:
            frames = jitter_frames(frames, s.gamma_jitter, s.seed, entry.video, decoded)
        decoded += len(frames)
        tracked = tracker.process(frames)   # its own crops are discarded: alignment uses smoothed landmarks
        if (decoded - start) % size == 0:   # a block ends here: the state a resume at this frame starts from
            states[decoded] = {"tracker": tracker.state()}
        yield from blocks(aligner.push(frames, tracked.landmarks, tracked.valid))
        report(len(frames))
    if hasattr(tracker, "finish"):   # an outside input longer than the video fails here (beyond the slack)
        (notes if notes is not None else {})["faces_frame_diff"] = int(tracker.finish())
    yield from blocks(aligner.flush(), final=True)


def chunk_frames(s) -> int:
    """Frames per block (`features --chunk-frames`): the unit of work a lost worker's video resumes from.

    Settings makes it a multiple of 32, i.e. of DECODE_CHUNK, ENCODE_WINDOW and MOTION_BATCH, so that blocks end where
    decoding chunks and encoder and pyramid batches do: every array is then the same whatever the block size (tests/test_resume.py).
    """
    return int(s.chunk_frames)


def group_blocks(cache, dataset: str, video: str, names: list[str], report):
    """Read blocks of these arrays back from a done group; a chunk that cannot be read marks its array damaged."""
    g = store.open_video(cache, dataset, video)
    n = int(g.attrs["n_frames"])
    for lo in range(0, n, store.CHUNK_T):   # whole Zarr chunks
        hi = min(lo + store.CHUNK_T, n)
        block = {}
        for name in names:
            try:
                block[name] = chunks.read_array(g[name], store.video_dir(cache, dataset, video) / name, lo, hi)
            except Exception as e:   # a corrupt or missing chunk: the array is not what its fingerprint says
                store.mark_damaged(cache, dataset, video, [name])
                raise BadInputError(store.video_dir(cache, dataset, video) / name,
                                    f"cannot read frames {lo}..{hi} of {name} ({type(e).__name__}: {e})",
                                    "it is marked damaged; the next `features` run rebuilds it from the video") from None
        yield block
        report(hi - lo)


# ---------------------------------------------------------------- computers

_ENCODERS: dict[tuple, object] = {}


def get_encoder(s):
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


class MotionComputer:
    """One motion kind (dphase, phase or flow) of one variant; carries the previous face across blocks."""

    reads = ("valid", "face48")   # the block keys it uses: a face transform is applied to these only

    def __init__(self, kind: str, variant: str | None, overrides: dict, device: str = "cpu"):
        from features.motion import FlowConfig
        from pipeline.settings import motion_config

        self.kind, self.device = kind, device
        self.names = {p: arrays.array_name(p, variant) for p in arrays.KINDS[kind].parts}
        self.config = FlowConfig() if kind == "flow" else motion_config(overrides)
        self.prev48: np.ndarray | None = None
        # ΔPhase carries a MotionState (the paper variant's unwrap needs the turns, not only the last face)
        self.state = None

    def __call__(self, block: dict) -> dict[str, np.ndarray]:
        """This kind's arrays for a block; row 0 uses the last face of the previous block when it was valid."""
        from features import motion as M

        face48, valid = block["face48"], block["valid"]
        if self.kind == "dphase":
            r, self.state = M.delta_phase(face48, valid, self.state, config=self.config, device=self.device,
                                          batch_size=MOTION_BATCH, return_state=True)
        elif self.kind == "phase":
            r = M.phase(face48, valid, config=self.config, device=self.device, batch_size=MOTION_BATCH)
        else:
            r = {"flow": M.optical_flow(face48, valid, self.prev48, config=self.config)["flow"]}
        self.prev48 = face48[-1] if valid[-1] else None
        # features.motion names its outputs by scale ("s0", "s1") or "flow"; the cache by part ("dphase_s0")
        return {name: r[part.removeprefix(f"{self.kind}_")] for part, name in self.names.items()}

    @property
    def key(self) -> str:
        """Names this computer in a progress record: its first array ("dphase_s0@paper")."""
        return next(iter(self.names.values()))

    def snapshot(self) -> dict:
        """What the next block needs beyond the cached face48 rows: the paper variant's integer turns."""
        turns = getattr(self.state, "turns", None)
        return {"turns": None if turns is None else {k: encode_array(v) for k, v in turns.items()}}

    def restore(self, last_face: np.ndarray, last_valid: bool, snap: dict, frames: int) -> None:
        """Continue at frame `frames`, after a cached face48 row and valid flag, with a `snapshot()` taken there."""
        from features.motion import MotionState

        face = np.asarray(last_face) if last_valid else None
        self.prev48 = face
        turns = snap.get("turns")
        self.state = None if face is None else MotionState(
            face, None if turns is None else {k: decode_array(v) for k, v in turns.items()})


def encode_array(a: np.ndarray) -> dict:
    """A small array as JSON, exactly (for progress records)."""
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def decode_array(d: dict) -> np.ndarray:
    """The inverse of `encode_array`."""
    return np.frombuffer(base64.b64decode(d["data"]), dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


class SpatialComputer:
    """resnet50 rows (of a variant: resnet50@flip): features of valid frames, zeros elsewhere (nothing to encode)."""

    reads = ("valid", "face224")

    def __init__(self, s, variant: str | None = None):
        self.encoder = get_encoder(s)
        self.names = {"resnet50": arrays.array_name("resnet50", variant)}

    @property
    def key(self) -> str:
        """Names this computer in a progress record: its array ("resnet50@flip")."""
        return self.names["resnet50"]

    def snapshot(self) -> dict:
        """Nothing is carried from one block to the next."""
        return {}

    def restore(self, last_face, last_valid, snap, frames: int) -> None:
        """Nothing to restore."""

    def __call__(self, block: dict) -> dict[str, np.ndarray]:
        valid = block["valid"]
        feats = np.zeros((len(valid), 2048), np.float32)
        for lo in range(0, len(valid), ENCODE_WINDOW):   # blocks start at multiples of ENCODE_WINDOW
            rows = lo + np.flatnonzero(valid[lo:lo + ENCODE_WINDOW])
            if len(rows):
                feats[rows] = self.encoder.encode(block["face224"][rows])
        return {self.names["resnet50"]: feats}


def computers(targets: list[str], s, motion_by_variant: dict, video: str = "") -> list:
    """The computers that make these derived arrays (face and labels are not computed here); a variant with face
    transforms (pipeline/face_transforms.py) is computed from the video's transformed faces."""
    from pipeline.face_transforms import wrap

    out, seen = [], set()
    for name in targets:
        kind = arrays.kind_of(name)
        variant = arrays.split_name(name)[1]
        if (kind.name, variant) in seen or kind.source not in ("face48", "face224"):
            continue
        seen.add((kind.name, variant))
        if kind.source == "face48":
            comp = MotionComputer(kind.name, variant, motion_by_variant.get(variant, {}), s.device)
        else:
            comp = SpatialComputer(s, variant)
        out.append(wrap(comp, variant, video))
    return out
