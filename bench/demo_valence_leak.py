"""What the temporal stream's input reads on the demo when nothing but the head, the light and a static expression
moves; prints one JSON line.

The demo's valence is a static expression (pipeline/demo_script.py): by design the spatial stream reads it and the
temporal stream, which should see micro-motions only, should not. This measures whether a ΔPhase variant carries
it anyway: a ridge probe on windowed ΔPhase energy (per 8x8-pixel cell, orientation and scale, mean |ΔPhase|
over 12 frames, as the temporal model's window) is fitted on the train videos of a demo cache, then scored (CCC)
on (a) its test videos and (b) the same test videos rendered again with every micro-motion event removed (same
head motion, lighting and valence; `features` run on them with the same settings). A variant whose probe still
reads valence in (b) reads it from the head's motion or the light over the face, not from micro-motions: the
leakage of issue 17. Arousal in (b) is a check: without micro-motion it should be near 0.
With ``--checkpoint VARIANT=best.pt`` (a temporal model trained on that variant, e.g. from `ablate`), the trained
model is scored the same way on (a) and (b) (`predict --cache`), so the figure is the model's, not only a probe's.

    python bench/demo_valence_leak.py --demo data/demo --cache zarr [--variants default,v1,paper]
                                      [--checkpoint v1=runs/x/input=dphase@v1_streams=temporal/fold0/best.pt]

The cache must hold the demo (`make demo`) and each variant (`features --motion-variant v1`, ...).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.demo_signal import ridge  # noqa: E402  (the demo's learnability probe: the same ridge)
from pipeline import store  # noqa: E402
from pipeline.demo import write_video  # noqa: E402
from pipeline.demo_script import EVENT_DTYPE, demo_script  # noqa: E402
from train.metrics import ccc  # noqa: E402

WINDOW = 12   # frames: the temporal model's window
CELLS = 6     # cells per side of a map


def energy_features(group, suffix: str) -> np.ndarray:
    out = []
    for s in ("s0", "s1"):
        a = np.abs(group[f"dphase_{s}{suffix}"][:].astype(np.float32))
        t, o, h, w = a.shape
        k = h // CELLS
        cells = a.reshape(t, o, CELLS, k, CELLS, k).mean((3, 5))
        out.append(uniform_filter1d(cells, WINDOW, axis=0).reshape(t, -1))
    return np.concatenate(out, 1)


def render_still(demo: Path, out: Path) -> list[Path]:
    """The demo's test videos again, with no micro-motion event."""
    rows = [r for r in json.loads((demo / "demo.json").read_text())["videos"] if r["split"] == "test"]
    paths = []
    for row in rows:
        script = dataclasses.replace(demo_script(row["seed"], row["frames"]), events=np.empty(0, EVENT_DTYPE))
        path = out / f"{row['id']}.avi"
        write_video(path, script)
        paths.append(path)
    return paths


def score_model(checkpoint: Path, videos: list[Path], caches: list[tuple[Path, str]], labelled: Path,
                out: Path) -> dict:
    """A trained model's CCC on the test videos of each (cache, dataset), against the demo cache's labels."""
    import pandas as pd

    from train.predict import predict_cache

    names = [p.stem for p in videos]
    res = {}
    for key, (cache, dataset) in zip(("test", "test_no_micro_motion"), caches):
        predict_cache(cache, dataset, checkpoint, out / key, split=None if dataset == "videos" else "test",
                      echo=lambda *a, **k: None)
        scores = []
        for name in names:
            pred = pd.read_csv(out / key / f"{name}.csv")
            labels = store.open_video(labelled, "demo", name)["labels"][:]
            scores.append([ccc(pred[d].to_numpy(), labels[:, i]) for i, d in enumerate(("arousal", "valence"))])
        a, val = np.mean(scores, 0)
        res[key] = {"ccc_arousal": round(float(a), 3), "ccc_valence": round(float(val), 3)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, required=True, help="the demo's folder (cli.py demo-data --out)")
    ap.add_argument("--cache", type=Path, required=True, help="its feature cache, with the variants")
    ap.add_argument("--variants", default="default,v1", help="comma list; 'default' is plain dphase")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="VARIANT=PATH",
                    help="also score this trained temporal model (its variant must be in --variants)")
    args = ap.parse_args()
    variants = args.variants.split(",")
    checkpoints = dict(c.split("=", 1) for c in args.checkpoint)
    index = store.read_index(args.cache, "demo")
    split = dict(zip(index["video"], index["split"]))
    tmp = Path(tempfile.mkdtemp(prefix="demo-still-"))
    try:
        videos = render_still(args.demo, tmp)
        for v in variants:
            flag = [] if v == "default" else ["--motion-variant", v]
            subprocess.run([sys.executable, str(ROOT / "cli.py"), "features", *map(str, videos), "--cache",
                            str(tmp / "cache"), "--stages", "align,motion", "--workers", "1", "--no-progress", *flag],
                           check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
        sets = (("test", args.cache, "demo"), ("test_no_micro_motion", tmp / "cache", "videos"))
        groups = {(name, p.stem): store.open_video(cache, dataset, p.stem) for name, cache, dataset in sets
                  for p in videos}
        valid = {key: g["valid"][:].astype(bool) for key, g in groups.items()}
        labels = {p.stem: groups[("test", p.stem)]["labels"][:] for p in videos}
        # the train videos' groups, frames with a face and labels do not depend on the variant: read them once
        train = [store.open_video(args.cache, "demo", vid) for vid in sorted(k for k, s in split.items() if s == "train")]
        train_ok = [g["valid"][:].astype(bool) for g in train]
        y = np.concatenate([g["labels"][:][ok] for g, ok in zip(train, train_ok)])
        result = {}
        for v in variants:
            suffix = "" if v == "default" else "@" + v
            x = np.concatenate([energy_features(g, suffix)[ok] for g, ok in zip(train, train_ok)])
            feats = [energy_features(g, suffix) for g in groups.values()]
            pred = ridge(x, y, np.concatenate(feats), lam=0.1)   # one fit
            pred = dict(zip(groups, np.split(pred, np.cumsum([len(f) for f in feats])[:-1])))
            row = {}
            for name, _, _ in sets:
                scores = []
                for p in videos:
                    pr, truth, ok = pred[(name, p.stem)], labels[p.stem], valid[(name, p.stem)]
                    scores.append([ccc(pr[ok, d], truth[ok, d]) for d in range(2)])
                a, val = np.mean(scores, 0)
                row[name] = {"ccc_arousal": round(float(a), 3), "ccc_valence": round(float(val), 3)}
            if v in checkpoints:
                row["model"] = score_model(Path(checkpoints[v]), videos, [(args.cache, "demo"), (tmp / "cache", "videos")],
                                           args.cache, tmp / f"pred-{v}")
            result[v] = row
        print(json.dumps({"probe": "ridge on 12-frame mean |dphase| per cell", "videos": [p.stem for p in videos],
                          "variants": result}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
