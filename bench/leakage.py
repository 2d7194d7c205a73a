"""How much of the temporal stream's input (ΔPhase) is the face's micro-motion, and how much head motion and light.

The reference for this question (issue 17); prints one JSON line. Clips are made from real face photographs
(bench/leakage_clips.py: the astronaut at three sizes and two cut-outs, and Grace Hopper), encoded with OpenCV
(MJPG), and go through the real stages as `features` runs them (decode -> dlib tracking -> alignment from
time-smoothed landmarks -> 48x48 -> ΔPhase), called as library functions (not the Dask graph), per setting.

Figures, per evaluated setting (``default`` is what `features` does without flags):

- ``energy``: for each nuisance alone (rotation up to 4 deg, translation up to 15 px, scale up to 3 %, each moving
  over 0.3-1 s; lighting gamma 0.75-1.25 drifting over 2 s) and for micro-motions alone (0.3-1.5 px, 2-10 frames),
  the mean ΔPhase energy per frame pair (mean square of the scale-0 maps) over the energy of the frame pairs where
  one site steps by 0.5 px (frame px) in a clip of such steps; mean and max over faces. A nuisance should leave
  far less than 1; micro-motions much more.
- ``micro_alone_r``: on the micro-only clips, the correlation of the smoothed mean |ΔPhase| with the micro speed.
- ``mixed``: on clips with everything at once (micro-motions, head, lighting), per clip the correlation of the
  smoothed mean |ΔPhase| (scale 0) with the micro-motion speed (sum over sites of |displacement change|), the
  head's speed (RMS landmark displacement) and the lighting change (|gamma change|), each smoothed by the same
  Gaussian (6 frames, the demo's arousal smoothing); mean, min and max over clips (and mean |r|).
- ``valid``: fraction of frames with a face; ``seconds``, ``frames``.

    python bench/leakage.py [--faces N] [--setting NAME] [--setting 'NAME={"motion": {"mean_window": 9}}']
                            [--keep DIR]

A setting is a JSON object with the pipeline's keys: ``motion`` (MotionConfig fields), ``face`` (FaceTracker
arguments), ``align_smooth`` (landmark smoothing sigma, frames), ``align`` (SmoothAligner keywords), and, for
diagnosis only, ``landmarks: "truth"`` (align with the true head pose instead of dlib's landmarks). ``--keep DIR``
writes every clip (MJPG AVI) with a CSV of its true per-frame speeds, to look at with `cli.py features` and
`cli.py inspect --truth`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.ndimage import gaussian_filter1d  # noqa: E402

from bench.leakage_clips import FACES, Scene, script, steps, write_clip  # noqa: E402

SMOOTH = 6.0  # frames: the demo's AROUSAL_SIGMA
NUISANCES = ("rotation", "translation", "scale", "lighting")
LENGTHS = {"reference": 108, "micro": 240, "rotation": 150, "translation": 150, "scale": 150, "lighting": 150,
           "mixed": 300}
MIXED_PER_FACE = 2
# Named settings: `default` is what `features` does without flags; the others are the built-in motion variants
# (pipeline.arrays.MOTION_VARIANTS: `v1` the defaults before issue 17, `paper` the paper's ΔPhase).
SETTINGS = {"default": {}, "v1": {"motion": "v1"}, "paper": {"motion": "paper"}}


def _decode(path: Path):
    from features.video import iter_chunks

    return iter_chunks(path, 32)


def track(path: Path, face: dict) -> tuple[np.ndarray, np.ndarray]:
    """dlib landmarks [T, 68, 2] and valid [T] of a clip, tracked as the pipeline does."""
    from features.face import FaceTracker

    tracker = FaceTracker(**face)
    parts = [tracker.process(c.frames) for c in _decode(path)]
    return np.concatenate([p.landmarks for p in parts]), np.concatenate([p.valid for p in parts])


def align(path: Path, landmarks: np.ndarray, valid: np.ndarray, setting: dict) -> tuple[np.ndarray, np.ndarray]:
    """Aligned 48x48 faces [T, 48, 48] and valid [T] from given landmarks, with the pipeline's smoothing."""
    from features.face import FaceTracker
    from features.smooth_align import SmoothAligner
    from pipeline.extract import Settings

    tr = FaceTracker(**setting.get("face", {}))
    aligner = SmoothAligner(setting.get("align_smooth", Settings().align_smooth), crop_size=tr.crop_size,
                            gray_size=tr.gray_size, scale=tr.scale, **setting.get("align", {}))
    out, t = [], 0
    for c in _decode(path):
        n = len(c.frames)
        r = aligner.push(c.frames, landmarks[t:t + n], valid[t:t + n])
        t += n
        if r is not None:
            out.append(r)
    r = aligner.flush()
    if r is not None:
        out.append(r)
    return np.concatenate([o.face48 for o in out]), np.concatenate([o.valid for o in out])


def motion_maps(face48: np.ndarray, valid: np.ndarray, setting: dict) -> np.ndarray:
    """ΔPhase scale 0 [T, 2, 48, 48] under the setting's MotionConfig."""
    from features.motion import MotionConfig, delta_phase
    from pipeline.arrays import MOTION_VARIANTS

    motion = setting.get("motion", {})
    motion = MOTION_VARIANTS[motion] if isinstance(motion, str) else motion  # a built-in variant's name
    return delta_phase(face48, valid, config=MotionConfig(**motion))["s0"]


def _align_key(setting: dict) -> str:
    return json.dumps({k: setting.get(k) for k in ("face", "align_smooth", "align", "landmarks")}, sort_keys=True)


def run_clip(path: Path, scene: Scene, sc, settings: dict[str, dict]) -> dict[str, dict]:
    """Per setting: per-frame mean |ΔPhase| and mean ΔPhase^2 (scale 0), and which rows are usable."""
    tracked = {}
    out = {}
    done: dict[str, tuple] = {}
    for name, st in settings.items():
        key = _align_key(st)
        if key not in done:
            if st.get("landmarks") == "truth":
                lm = np.stack([scene.landmarks(p) for p in sc.head]).astype(np.float32)
                ok = np.ones(sc.n, bool)
            else:
                fk = json.dumps(st.get("face", {}), sort_keys=True)
                if fk not in tracked:
                    tracked[fk] = track(path, st.get("face", {}))
                lm, ok = tracked[fk]
            done[key] = align(path, lm, ok, st)
        face48, valid = done[key]
        d = motion_maps(face48, valid, st)
        rows = valid.copy()
        rows[1:] &= valid[:-1]
        rows[0] = False
        out[name] = {"abs": np.abs(d).mean(axis=(1, 2, 3)), "sq": (d.astype(np.float64) ** 2).mean(axis=(1, 2, 3)),
                     "rows": rows, "valid": float(valid.mean())}
    return out


def _smooth_r(x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> float:
    """Correlation of x and y, each Gaussian-smoothed over time, over the usable rows (others filled in first)."""
    x = np.interp(np.arange(len(x)), np.flatnonzero(rows), x[rows])
    xs, ys = gaussian_filter1d(x, SMOOTH), gaussian_filter1d(y, SMOOTH)
    keep = rows.copy()
    return float(np.corrcoef(xs[keep], ys[keep])[0, 1])


def _stats(v: list[float]) -> dict:
    a = np.asarray(v)
    return {"mean": round(float(a.mean()), 3), "min": round(float(a.min()), 3), "max": round(float(a.max()), 3),
            "mean_abs": round(float(np.abs(a).mean()), 3)}


def evaluate(faces, settings: dict[str, dict], keep: Path | None, progress: bool) -> dict:
    """Render every clip once, run every setting on it, and reduce to the figures of the module docstring."""
    from pipeline.extract import Settings

    acc = {n: {"ref": [], "energy": {k: [] for k in (*NUISANCES, "micro")}, "micro_alone_r": [],
               "mixed": {"micro": [], "head": [], "light": []}, "valid": []} for n in settings}
    frames = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for fi, spec in enumerate(faces):
            scene = Scene(spec, seed=fi)
            clips = [("reference", 0), ("micro", 0), *((k, 0) for k in NUISANCES),
                     *(("mixed", s) for s in range(MIXED_PER_FACE))]
            ref_rows = None
            per = {}
            for kind, s in clips:
                n = LENGTHS[kind]
                if kind == "reference":
                    sc = script("static", n, 0)
                    sc.coef, at = steps(n)
                    ref_rows = at
                else:
                    sc = script(kind, n, 1000 * fi + 10 * s + 1)
                name = f"{kind}{s if kind == 'mixed' else ''}_{spec.name}"
                path = folder / f"{name}.avi"
                write_clip(path, scene, sc)
                truth = scene.truth(sc)
                if keep:
                    np.savetxt(folder / f"{name}.truth.csv", np.column_stack([truth[k] for k in truth]),
                               delimiter=",", header=",".join(truth), comments="", fmt="%.5f")
                res = run_clip(path, scene, sc, settings)
                frames += n
                per[kind, s] = (res, truth)
                if progress:
                    print(f"[leakage] {name}: {n} frames", file=sys.stderr, flush=True)
            for nm in settings:
                res = per["reference", 0][0][nm]
                ok = [t for t in ref_rows if res["rows"][t]]
                e_ref = float(res["sq"][ok].mean())
                a = acc[nm]
                a["ref"].append(e_ref)
                for kind in (*NUISANCES, "micro"):
                    r = per[kind, 0][0][nm]
                    a["energy"][kind].append(float(r["sq"][r["rows"]].mean()) / e_ref)
                r, truth = per["micro", 0]
                a["micro_alone_r"].append(_smooth_r(r[nm]["abs"], truth["micro"], r[nm]["rows"]))
                for s in range(MIXED_PER_FACE):
                    r, truth = per["mixed", s]
                    for k in ("micro", "head", "light"):
                        a["mixed"][k].append(_smooth_r(r[nm]["abs"], truth[k], r[nm]["rows"]))
                a["valid"] += [per[c][0][nm]["valid"] for c in per]
    out = {}
    for nm, a in acc.items():
        out[nm] = {
            "energy": {k: round(float(np.mean(v)), 3) for k, v in a["energy"].items()},
            "energy_max": {k: round(float(np.max(v)), 3) for k, v in a["energy"].items()},
            "micro_alone_r": _stats(a["micro_alone_r"])["mean"],
            "mixed": {f"r_{k}": _stats(v) for k, v in a["mixed"].items()},
            "valid": round(float(np.mean(a["valid"])), 4),
            "reference_energy": round(float(np.mean(a["ref"])), 6),
        }
    out["_frames"] = frames
    out["_default_settings"] = {"align_smooth": Settings().align_smooth}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=len(FACES), help=f"how many of the {len(FACES)} face scenes to use")
    ap.add_argument("--setting", action="append", default=None,
                    help="a named setting (default, v1, paper) or NAME=JSON; repeat; default: default and v1")
    ap.add_argument("--keep", type=Path, help="write the clips (AVI) and their true speeds (CSV) to this folder")
    ap.add_argument("--progress", action="store_true", help="one line per clip on stderr")
    args = ap.parse_args()
    settings = {}
    for s in args.setting or ["default", "v1"]:
        name, _, js = s.partition("=")
        if js:
            settings[name] = json.loads(js)
        elif name in SETTINGS:
            settings[name] = SETTINGS[name]
        else:
            ap.error(f"unknown setting {name!r}: give one of {sorted(SETTINGS)} or NAME=JSON")
    import torch

    torch.set_num_threads(1)  # as the pipeline's workers (Settings.threads): one core each
    t0 = time.perf_counter()
    figs = evaluate(FACES[:args.faces], settings, args.keep, args.progress)
    frames = figs.pop("_frames")
    defaults = figs.pop("_default_settings")
    print(json.dumps({"faces": [f.name for f in FACES[:args.faces]], "frames": frames,
                      "seconds": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count(),
                      "pipeline_defaults": defaults, "settings": settings, **figs}))


if __name__ == "__main__":
    main()
