"""The demo dataset: short videos of a real public-domain face with per-frame arousal/valence, Aff-Wild layout.

    <out>/videos/{train,test}/demo_000.avi
    <out>/annotations/{train,test}/{arousal,valence}/demo_000.txt    one float per line, line i = frame i
    <out>/demo.json                                                  parameters, per-video seeds, "complete"

The face is scikit-image's astronaut (NASA, public domain). What each frame shows is drawn by
``pipeline.demo_script`` (labels, events, head motion, lighting; cheap, no pixels) and rendered by
``pipeline.demo_render``. Arousal is carried only by micro-motions (local warps of brows, lids, mouth, 2-10
frames, 0.3-3 px), valence only by a slowly changing static expression, so the temporal stream has arousal
to learn and the spatial stream valence; head motion and lighting come from separate RNG streams.

Encoding: Motion-JPEG in AVI through OpenCV's FFmpeg backend. It is intra-only, so the sub-pixel motions
survive without a codec's inter-frame prediction smearing them or pulsing at keyframes, and a 10 s video
is ~8 MB; ``bench/demo_signal.py`` compares it with mp4v.

Reruns: if ``out`` already holds a complete demo made with the same parameters (and generator version),
nothing is done. If it holds a demo with other parameters, or an interrupted one, that demo is replaced.
Anything else in ``out`` is refused: the generator never deletes files it did not write.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from features.errors import BadInputError
from pipeline.demo_render import HEIGHT, WIDTH, render_frames
from pipeline.demo_script import FPS, DemoScript, demo_script

__all__ = ["GENERATOR_VERSION", "DemoScript", "demo_script", "make_demo", "read_labels", "video_seed"]

GENERATOR_VERSION = 2  # bump when the generator's output changes, so old demos are regenerated
FOURCC, EXT = "MJPG", ".avi"
MANIFEST = "demo.json"
_OURS = {"videos", "annotations", MANIFEST}


def video_seed(seed: int, index: int) -> int:
    """The script seed of video `index` in a demo made with `seed` (independent streams per video)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _write_labels(path: Path, values: np.ndarray) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_text("".join(f"{v:.6f}\n" for v in values))
    os.replace(tmp, path)


def read_labels(path: Path) -> np.ndarray:
    """One float per line, as written for the demo (and as Aff-Wild ships them)."""
    return np.loadtxt(path, dtype=np.float64, ndmin=1)


def write_video(path: Path, script: DemoScript, progress=None) -> int:
    """Render and encode one script to `path`; returns the frame count OpenCV reads back from the file."""
    tmp = path.with_name(path.stem + ".part" + path.suffix)  # the suffix picks the container
    writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*FOURCC), script.fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {FOURCC} video to {tmp}: is the FFmpeg backend available?")
    try:
        for frame in render_frames(script):
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
            if progress is not None:
                progress.update(1)
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(tmp))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if n != script.n_frames:
        raise RuntimeError(f"{tmp}: wrote {script.n_frames} frames but OpenCV reports {n}")
    os.replace(tmp, path)
    return n


def _params(videos: int, seconds: float, seed: int, test_videos: int) -> dict:
    return {"videos": videos, "seconds": float(seconds), "seed": seed, "test_videos": test_videos,
            "fps": FPS, "width": WIDTH, "height": HEIGHT, "codec": FOURCC, "version": GENERATOR_VERSION}


def _plan(params: dict) -> list[dict]:
    n_frames = round(params["seconds"] * FPS)
    rows = []
    for i in range(params["videos"]):
        vid = f"demo_{i:03d}"
        split = "test" if i >= params["videos"] - params["test_videos"] else "train"
        rows.append({
            "id": vid, "split": split, "frames": n_frames, "seed": video_seed(params["seed"], i),
            # relative to `out`, so a moved demo is still recognised as complete
            "video": f"videos/{split}/{vid}{EXT}",
            "arousal": f"annotations/{split}/arousal/{vid}.txt",
            "valence": f"annotations/{split}/valence/{vid}.txt",
        })
    return rows


def _previous(out: Path, params: dict) -> dict | None:
    """The manifest of a finished identical demo in `out`; clears a different or unfinished one; refuses others."""
    if out.exists() and not out.is_dir():
        raise BadInputError(out, "exists and is not a directory", "choose another --out")
    if not out.exists():
        return None
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return None
    manifest = out / MANIFEST
    if not manifest.is_file() or entries - _OURS:
        raise BadInputError(out, "is not empty and does not hold a demo dataset made by this command",
                            "choose an empty or new --out directory; the demo generator never deletes other files")
    try:
        old = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(manifest, f"unreadable demo manifest ({exc})",
                            "delete the directory and rerun") from exc
    if (old.get("complete") and old.get("params") == params
            and old.get("videos") == _plan(params)
            and all((out / row[k]).is_file() for row in old["videos"] for k in ("video", "arousal", "valence"))):
        return old
    for name in _OURS & entries:  # a demo with other parameters, or one that was interrupted: replace it
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return None


def make_demo(out: Path, videos: int = 8, seconds: float = 10.0, seed: int = 0,
              test_videos: int | None = None, progress: bool = True) -> dict:
    """Generate the demo dataset in Aff-Wild layout under `out`; returns a summary (paths, frames, seconds)."""
    out = Path(out)
    if videos < 1:
        raise BadInputError(None, f"--videos must be at least 1, got {videos}")
    if not seconds > 0:
        raise BadInputError(None, f"--seconds must be positive, got {seconds}")
    if test_videos is None:
        test_videos = max(1, round(videos / 4)) if videos > 1 else 0
    if not 0 <= test_videos < videos:
        raise BadInputError(None, f"test videos must be between 0 and {videos - 1} (fewer than the {videos} "
                                  f"videos, so some train), got {test_videos}")
    start = time.perf_counter()
    params = _params(videos, seconds, seed, test_videos)
    old = _previous(out, params)
    if old is not None:
        return _summary(out, old["videos"], time.perf_counter() - start, skipped=True)
    rows = _plan(params)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps({"params": params, "videos": rows, "complete": False}, indent=1))
    from tqdm import tqdm

    bar = tqdm(total=sum(r["frames"] for r in rows), unit="frame", desc="demo videos", file=sys.stderr,
               disable=not progress)
    try:
        for row in rows:
            script = demo_script(row["seed"], row["frames"])
            for key in ("video", "arousal", "valence"):
                (out / row[key]).parent.mkdir(parents=True, exist_ok=True)
            _write_labels(out / row["arousal"], script.arousal)
            _write_labels(out / row["valence"], script.valence)
            write_video(out / row["video"], script, bar)
    finally:
        bar.close()
    (out / MANIFEST).write_text(json.dumps({"params": params, "videos": rows, "complete": True}, indent=1))
    return _summary(out, rows, time.perf_counter() - start, skipped=False)


def _summary(out: Path, rows: list[dict], seconds: float, skipped: bool) -> dict:
    rows = [{**r, **{k: str(out / r[k]) for k in ("video", "arousal", "valence")}} for r in rows]
    size = sum(Path(r["video"]).stat().st_size for r in rows)
    return {"out": str(out), "videos": rows, "frames": sum(r["frames"] for r in rows),
            "bytes": size, "seconds": round(seconds, 3), "skipped": skipped}
