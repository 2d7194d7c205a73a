"""Ablation grids over one feature cache (the paper's Tables 3-5: window length, streams, input features).

Each cell x fold is an ordinary training run in <out>/<cell>/fold<i>; a run whose metrics.json exists is
skipped, so an interrupted ablation resumes where it stopped. The tables report the mean CCC across folds.
"""
from __future__ import annotations

import itertools
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import BadInputError
from train.trainer import TrainConfig, train


def parse_grid(grid: list[str]) -> list[tuple[str, list]]:
    """["window=4,8", "streams=spatial,both"] -> [("window", [4, 8]), ("streams", ["spatial", "both"])]."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    axes = []
    for spec in grid:
        key, _, vals = spec.partition("=")
        key = key.strip().replace("-", "_")
        if key not in types or not vals:
            raise BadInputError(None, f"bad --grid {spec!r}", "write NAME=V1,V2 with NAME a train option, "
                                "e.g. window=4,8,12,16 or streams=spatial,temporal,both or input=dphase,phase,flow")
        kind = str(types[key])
        cast = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true", "yes")}.get(kind, str)
        try:
            axes.append((key, [cast(v.strip()) for v in vals.split(",") if v.strip()]))
        except ValueError:
            raise BadInputError(None, f"bad value in --grid {spec!r}", f"{key} takes {kind} values") from None
    return axes


def ablate(cache, dataset: str, grid: list[str], out, base: TrainConfig | None = None, folds: int = 5,
           fold_ids: list[int] | None = None) -> pd.DataFrame:
    """Run every grid cell on folds 0..K-1 (or fold_ids); write ablation.csv/.md; return the table."""
    axes = parse_grid(grid)
    out = Path(out)
    base = replace(base or TrainConfig(), cache=str(cache), dataset=dataset, folds=folds)
    rows = []
    for values in itertools.product(*[v for _, v in axes]):
        cell = dict(zip([k for k, _ in axes], values))
        name = "_".join(f"{k}={v}" for k, v in cell.items())
        res = []
        for f in (fold_ids if fold_ids is not None else range(folds)):
            run = out / name / f"fold{f}"
            path = run / "metrics.json"
            if not path.is_file():
                if not base.quiet:
                    print(f"== {name} fold {f}", file=sys.stderr)
                m = train(replace(base, **cell, fold=f, out=str(run), resume=True, **_siblings(out, cell, f, base)))
                if m.get("interrupted"):
                    continue
            res.append(json.loads(path.read_text()))
        rows.append({**cell, "folds": len(res), **_summary(res)})
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "ablation.csv", index=False, float_format="%.4f")
    (out / "ablation.md").write_text(markdown(table, [k for k, _ in axes], dataset, base))
    return table


def _siblings(out: Path, cell: dict, fold: int, base: TrainConfig) -> dict:
    """A two-stream cell starts from the same fold's single-stream cells when the grid has them (as the paper
    trains: single streams first), instead of training both single streams again inside its own folder."""
    if cell.get("streams") != "both" or base.init_spatial or base.init_temporal:
        return {}
    inits = {}
    for part in ("spatial", "temporal"):
        name = "_".join(f"{k}={part if k == 'streams' else v}" for k, v in cell.items())
        ckpt = out / name / f"fold{fold}" / "best.pt"
        if ckpt.is_file():
            inits[f"init_{part}"] = str(ckpt)
    return inits if len(inits) == 2 else {}


def _summary(res: list[dict]) -> dict:
    """Mean and std across folds of the held-out CCCs (None in metrics.json = NaN)."""
    out = {}
    for k in ("ccc_arousal", "ccc_valence"):
        vals = np.array([np.nan if r.get(k) is None else r[k] for r in res], float)
        out[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        out[f"{k}_std"] = float(np.nanstd(vals)) if np.isfinite(vals).any() else float("nan")
    out["ccc_mean"] = (out["ccc_arousal"] + out["ccc_valence"]) / 2
    return out


def markdown(table: pd.DataFrame, keys: list[str], dataset: str, base: TrainConfig) -> str:
    """A paper-style Markdown table: one row per cell, mean CCC across folds (± std)."""
    head = [*keys, "CCC arousal", "CCC valence", "CCC mean", "folds"]
    lines = [f"# Ablation on {dataset}", "",
             (f"Base: streams={base.streams}, input={base.input}, window={base.window}, arch={base.arch}, "
              f"epochs={base.epochs}, lr={base.lr}. Mean over folds (± std across folds)."), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [str(r[k]) for k in keys]
        cells += [f"{r['ccc_arousal']:.3f} ± {r['ccc_arousal_std']:.3f}",
                  f"{r['ccc_valence']:.3f} ± {r['ccc_valence_std']:.3f}", f"{r['ccc_mean']:.3f}", str(r["folds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
