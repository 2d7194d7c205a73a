"""Streaming video decode with OpenCV: chunks of RGB frames, memory independent of the video's length."""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from features.errors import BadInputError

# Used when the container gives no usable frame rate; times are then a guess, and a warning says so.
FALLBACK_FPS = 30.0


class TruncatedVideoWarning(UserWarning):
    """Decoding stopped before the container's announced frame count; the frames decoded so far were kept."""


@dataclass
class VideoInfo:
    """What the container says about a video (n_frames: its count, may be approximate; 0 if it has none)."""

    path: str
    fps: float
    n_frames: int
    width: int
    height: int


@dataclass
class FrameChunk:
    """Consecutive decoded frames: frames [n, H, W, 3] uint8 RGB, times [n] float64 seconds (index / fps).

    `last` is True on the final chunk; `truncated` is True on it when decoding stopped before the container's
    announced frame count (the file is cut or corrupt past that point); `announced` is that count (0: none).
    """

    start: int
    frames: np.ndarray
    times: np.ndarray
    last: bool = False
    truncated: bool = False
    announced: int = 0


def _looks_like_text(path: Path) -> bool:
    """Video containers have binary headers (box sizes, RIFF chunk sizes hold NUL bytes); text has none."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _open(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise BadInputError(path, "video file not found")
    if not path.is_file():
        raise BadInputError(path, "not a file")
    if path.stat().st_size == 0:
        raise BadInputError(path, "video file is empty (0 bytes)", "re-copy or re-download it")
    if _looks_like_text(path):
        raise BadInputError(path, "this is a text file, not a video", "pass a video file (mp4, avi, mkv...)")
    cap = cv2.VideoCapture(str(path))
    # FFmpeg renders text files as ANSI art (codec 'ansi'): a "video" of the text, never what the user meant.
    if cap.isOpened() and int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"ansi":
        cap.release()
        raise BadInputError(path, "this is a text file, not a video", "pass a video file (mp4, avi, mkv...)")
    if not cap.isOpened():
        cap.release()
        raise BadInputError(path, "OpenCV cannot open this as a video (corrupt, truncated before its header,"
                                  " or not a video)", "check the file with ffprobe")
    return cap


def _fps(cap: cv2.VideoCapture) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if math.isfinite(fps) and 0 < fps < 1000 else 0.0


def probe(path: str | Path) -> VideoInfo:
    """Open a video, decode its first frame, and return what its container says; BadInputError if unusable."""
    path = Path(path)
    cap = _open(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise BadInputError(path, "no frame could be decoded (corrupt or not a video)",
                                "check the file with ffprobe")
        fps = _fps(cap)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        h, w = frame.shape[:2]
    finally:
        cap.release()
    if fps == 0.0:
        warnings.warn(f"{path}: no frame rate in the container; assuming {FALLBACK_FPS} fps", stacklevel=2)
        fps = FALLBACK_FPS
    return VideoInfo(path=str(path), fps=fps, n_frames=max(n, 0), width=w, height=h)


def count_frames(path: str | Path) -> tuple[int, str]:
    """(frames, how counted) without decoding where the container knows: its frame count (MP4's sample table, AVI's
    index); else every frame is grabbed (decoded, not converted). For faces that come from elsewhere (crops)."""
    path = Path(path)
    cap = _open(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n > 0:
            return n, "the video's container says"
        n = 0
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise BadInputError(path, "no frame could be decoded (corrupt or not a video)", "check the file with ffprobe")
    return n, "the video decodes to"


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def iter_chunks(path: str | Path, chunk_size: int = 64, start: int = 0) -> Iterator[FrameChunk]:
    """Decode a video in chunks of at most `chunk_size` frames (RGB), holding one chunk and one frame at a time.

    `start` > 0 begins at that frame (to resume a video mid-way): the frames before it are decoded in order and
    dropped without conversion (no seek: seeking is not frame-exact in every container), so frame `start` is the
    same image it is in a full decode. A file that stops decoding early keeps every frame it gave: the final
    chunk has `truncated=True` and a TruncatedVideoWarning is issued. A file that gives no frame at all raises
    BadInputError; one with no frame from `start` on gives no chunk.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    path = Path(path)
    cap = _open(path)
    try:
        fps = _fps(cap) or FALLBACK_FPS
        announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for skipped in range(start):
            if not cap.grab():
                raise BadInputError(path, f"the video ends at frame {skipped}, before frame {start} where its "
                                    "extraction was to resume", "the file changed: rerun with --force")
        ok, pending = cap.read()
        if (not ok or pending is None) and start:
            return   # resumed exactly at the end: nothing left
        if not ok or pending is None:
            raise BadInputError(path, "no frame could be decoded (corrupt or not a video)",
                                "check the file with ffprobe")
        shape = pending.shape
        while pending is not None:
            buf = []
            while pending is not None and len(buf) < chunk_size:
                if pending.shape != shape:
                    raise BadInputError(path, f"frame {start + len(buf)} has shape {pending.shape}, "
                                              f"the first frame {shape}", "re-encode the video")
                buf.append(_to_rgb(pending))
                ok, nxt = cap.read()
                pending = nxt if ok else None
            n = len(buf)
            last = pending is None
            # Containers round their count; only a clear shortfall (> 2 frames and > 1%) is called truncation.
            decoded = start + n
            truncated = last and announced > 0 and announced - decoded > max(2, 0.01 * announced)
            if truncated:
                warnings.warn(f"{path}: decoding stopped at frame {decoded} of {announced} announced; "
                              "keeping the frames decoded", TruncatedVideoWarning, stacklevel=2)
            yield FrameChunk(start=start, frames=np.stack(buf), times=(start + np.arange(n)) / fps,
                             last=last, truncated=bool(truncated), announced=max(announced, 0))
            start += n
    finally:
        cap.release()
