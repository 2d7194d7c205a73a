"""Ablation grids over one feature cache (the paper's Tables 3-5: window length, streams, input features).

Each cell x fold is an ordinary training run in <out>/<cell>/fold<i>, trained with ``reuse``: a finished run is
reused only when its identity (every deciding setting, the init checkpoints' content, the cache's fingerprints and
the videos, train/config.py) equals the cell's now; any other is rerun, saying why. An unfinished run of the same
identity resumes, so an interrupted ablation picks up where it stopped. A two-stream cell starts from the same
fold's single-stream cells when the grid has them (as the paper trains: single streams first), under the same rule.
The tables report the mean CCC across the folds with a finite score, the architecture and the input of each row,
and the protocol that made the numbers (train/protocol.py: held-out split, selection, sampling, scoring) in their
header (or per row when the grid changes it). For per-frame labels the CCC counts every labelled frame (no face:
the nearest prediction); the face-only mean is in its own column, and so are the scores of the released code's
rescaling (train/rescale.py) and, under a protocol with a held-out split, the scores of the mean of the fold models'
predictions on it (the released code's test predictions; `predict`'s files for it in <cell>/fold_mean).
"""
from __future__ import annotations

import datetime
import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import BadInputError
from pipeline import not_updated
from pipeline.uniform import listing
from train import config, protocol, run_lock
from train.config import TrainConfig
from train.grid import check_cells, parse_grid, show
from train.report import atomic
from train.trainer import train
from train.videos import one_data

__all__ = ["ablate", "fold_list", "markdown", "parse_grid", "summarize_folds"]


def ablate(cache, dataset: str, grid: list[str], out, base: TrainConfig | None = None, folds: int = 5,
           fold_ids: list[int] | None = None) -> pd.DataFrame:
    """Run every grid cell on folds 0..K-1 (or fold_ids); write ablation.csv/.md; return the table."""
    axes = parse_grid(grid)
    ids = fold_list(fold_ids, folds)
    out = Path(out)
    base = replace(base or TrainConfig(), cache=str(cache), dataset=dataset, folds=folds)
    cells = [dict(zip([k for k, _ in axes], values)) for values in itertools.product(*[v for _, v in axes])]
    check_cells(cells, base)   # every cell's settings before the first trains
    with run_lock.held(out, "ablate"):   # its cells are trained under it (train/run_lock.py)
        return _run_cells(out, axes, cells, ids, base, dataset, folds)


def _run_cells(out: Path, axes, cells: list[dict], ids: list[int], base: TrainConfig, dataset: str,
               folds: int) -> pd.DataFrame:
    """Train every cell x fold in ``out``, write ablation.csv/.md; return the table."""
    mark_stale(out)
    rows, runs = [], {}
    for cell in cells:
        name = _name(cell)
        res, done = [], []
        for f in ids:
            cfg = replace(base, **cell, fold=f, out=str(out / name / f"fold{f}"), reuse=True, resume=False)
            inits = _siblings(out, cell, cells, cfg)
            if inits is None:
                continue   # a single-stream cell it starts from was interrupted
            if not base.quiet:
                print(f"== {name} fold {f}", file=sys.stderr)
            m = train(replace(cfg, **inits))
            if not m.get("interrupted"):
                res.append(m)
                done.append(Path(cfg.out))
                runs[f"{name}/fold{f}"] = m
        shown = {k: show(v) if isinstance(v, tuple) else v for k, v in cell.items()}   # milestones 10:20
        rows.append({**shown, **_labels(cell, base), **summarize_folds(res), **_fold_mean(res, done, out / name, base),
                     "protocol": _protocol(res)})
    read = one_data(runs, out, "ablation")
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    # the scores rounded, never the grid's values (lr 5e-5 and 1e-4 both printed 0.0001)
    scores = {c: table[c].map(lambda x: f"{x:.4f}" if pd.notna(x) else "") for c in score_columns(table)}
    atomic(out / "ablation.csv", lambda p: table.assign(**scores).to_csv(p, index=False))
    notes = [n for n in (ran_under(runs), fewer_videos(runs), read_not_updated(runs)) if n]
    text = markdown(table, [k for k, _ in axes], dataset, base, read, ids, notes)
    atomic(out / "ablation.md", lambda p: p.write_text(text))   # last: a table without the stale mark is whole
    table.attrs["notes"] = [_folds_text(ids, folds), *notes]   # the console says them too
    return table


STALE = "> **Stale:**"


def mark_stale(out: Path, command: str = "ablate", table: str = "ablation.md",
               removed: tuple[str, ...] = ("ablation.csv",), what: str = "cells") -> None:
    """Before any cell is trained: the table of an earlier run in ``out`` is marked stale (``table``) and the files
    written beside it are removed (``removed``: ablation.csv, which a script would read without a word), so a run that
    retrains cells and is killed, or stops on an error, never leaves the old table looking current beside runs it no
    longer describes. The run's own table, written whole at its end, replaces them (`robustness` marks its own:
    robustness.md, and removes robustness.csv, .json and .png)."""
    md = out / table
    for name in removed:
        (out / name).unlink(missing_ok=True)
    if not md.is_file():
        return
    old = md.read_text()
    if old.startswith(STALE):   # an earlier run that did not finish marked it already
        return
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    gone = " and ".join([", ".join(removed[:-1]), removed[-1]] if len(removed) > 1 else removed)
    article = "an" if command[0] in "aeiou" else "a"
    banner = (f"{STALE} {article} `{command}` run started in this folder at {when} and has not finished: {what} "
              "below may have been trained again since, under its settings. This is the table of the run before it "
              f"(its {gone} {'was' if len(removed) == 1 else 'were'} removed); run the command to its end for a "
              "current one.\n\n")
    atomic(md, lambda p: p.write_text(banner + old))


def ran_under(runs: dict[str, dict]) -> str | None:
    """A note when the table's runs trained under different torch thread counts or devices (metrics.json:
    threads_used), which alone move CCC (torch splits its CPU sums by thread; CUDA rounds otherwise): reused cells may
    come from an earlier command with other --threads or --device. None when all ran alike."""
    how: dict[str, list[str]] = {}
    for name, m in runs.items():
        used = m.get("threads_used") or []
        key = " then ".join(dict.fromkeys(f"{u.get('threads')} thread{'' if u.get('threads') == 1 else 's'} on "
                                          f"{u.get('device')}" for u in used)) or "not recorded"
        how.setdefault(key, []).append(name)
    if len(how) < 2 and not any(" then " in k for k in how):
        return None
    return ("Runs trained under different torch threads or devices, which alone change the numbers (README): "
            + "; ".join(f"{k}: {listing(sorted(v), 3)}" for k, v in sorted(how.items())) + ".")


def fewer_videos(runs: dict[str, dict]) -> str | None:
    """A note when some runs left out videos that other runs of the table read (--skip-unusable: an input missing on
    some videos): their rows are over fewer videos, and other folds drawn over them, which the Data line's one set of
    fingerprints does not say. None when no run left out a video another read (a video without a face is left out
    of every run alike)."""
    read = set().union(*({v for vs in (m.get("videos") or {}).values() for v in vs} for m in runs.values()))
    short = {name: {v: why for v, why in (m.get("left_out") or {}).items() if v in read} for name, m in runs.items()}
    short = {name: gone for name, gone in sorted(short.items()) if gone}
    if not short:
        return None
    gone = next(iter(short.values()))
    return ("Runs that left out videos other runs read (--skip-unusable), so their rows are over fewer videos (other "
            "folds, or another held-out set): " + "; ".join(f"{name}: {listing(sorted(g), 3)}"
                                                           for name, g in list(short.items())[:4])
            + (f"; and {len(short) - 4} more runs" if len(short) > 4 else "")
            + f" (first reason: {gone[sorted(gone)[0]]}; each run's metrics.json lists them in left_out).")


def read_not_updated(runs: dict[str, dict]) -> str | None:
    """A note when some runs read done videos whose last `features` run reported an error (their file changed since,
    the rebuild failed; metrics.json's not_updated): their rows come from the arrays made before, from the files as
    they were, which the Data line's fingerprints do not say. None when no run did."""
    which = {name: m["not_updated"] for name, m in sorted(runs.items()) if m.get("not_updated")}
    if not which:
        return None
    errors = {v: e for gone in which.values() for v, e in gone.items()}
    names = list(which)
    return not_updated.note(errors, f"{'run' if len(names) == 1 else 'runs'} {listing(names, 4)} read",
                            "each run's metrics.json lists {it} in not_updated")


def score_columns(table: pd.DataFrame) -> list[str]:
    """The columns of scores (rounded when printed); the grid's axes and the labels are printed as they are."""
    return [c for c in table.columns if str(c).startswith("ccc_")]


def fold_list(fold_ids: list[int] | None, folds: int) -> list[int]:
    """The folds a table runs: all of 0..folds-1, or --fold-ids, each once and each below --folds (refused up front,
    naming --fold-ids, not when its turn comes after the others trained)."""
    if fold_ids is None:
        return list(range(folds))
    ids, given = list(fold_ids), ",".join(map(str, fold_ids))
    if not ids:
        raise BadInputError(None, "--fold-ids names no fold", f"give folds in 0..{folds - 1}, e.g. --fold-ids 0")
    twice = sorted({f for f in ids if ids.count(f) > 1})
    if twice:
        raise BadInputError(None, f"--fold-ids {given} names fold {', '.join(map(str, twice))} more than once",
                            "give each fold once: a fold counted twice weighs twice in the mean and shrinks the ± std")
    bad = [f for f in ids if not 0 <= f < folds]
    if bad:
        raise BadInputError(None, f"--fold-ids {given}: {', '.join(map(str, bad))} not in 0..{folds - 1} (--folds "
                            f"{folds})", "pick folds below --folds, or raise --folds")
    return ids


def _folds_text(ids: list[int], folds: int) -> str:
    """Which folds a row's mean is over: "the 5 folds", or "folds 0, 2 of the 5 (--fold-ids)"."""
    if ids == list(range(folds)):
        return f"Mean over the {folds} folds"
    return f"Mean over fold{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} of the {folds} (--fold-ids)"


def _fold_mean(res: list[dict], folders: list[Path], where: Path, base: TrainConfig) -> dict:
    """Under a protocol with a held-out split, the scores of the mean of the fold models' predictions on it (as
    the released code made its test predictions; `predict` with every fold's best.pt, files in <cell>/fold_mean):
    {} with fewer than two finished folds or under cross-validation (each fold holds out other videos). What
    <cell>/fold_mean holds is reused when the same models read the same data (train/predict_reuse.py)."""
    from train.predict import predict_cache

    held = {r["split"] for r in res}
    if len(res) < 2 or len(held) != 1 or next(iter(held)).startswith("fold "):
        return {}
    # the runs' own folders in this table: a reused run's config.out is where it was first trained, as typed then
    # (relative to that shell), and may now name another table's models
    ckpts = [f / "best.pt" for f in folders]
    sc = predict_cache(base.cache, base.dataset, ckpts, where / "fold_mean", split=held.pop(),
                       echo=lambda *a: None, reuse=True)["scores"]
    scaled = sc.get("rescaled") or {}
    return {"ccc_mean_fold_mean": sc["ccc_mean"], "ccc_mean_fold_mean_rescaled": scaled.get("ccc_mean", float("nan"))}


def _name(cell: dict) -> str:
    return "_".join(f"{k}={show(v)}" for k, v in cell.items())


def _siblings(out: Path, cell: dict, cells: list[dict], cfg: TrainConfig) -> dict | None:
    """A two-stream cell starts from the same fold's single-stream cells when the grid has both, instead of training
    them again inside its own folder. Each is trained with ``reuse`` (so it is reused only when its identity is the
    one it would have now, else retrained) on the two-stream cell's own split; None if one was interrupted."""
    if cell.get("streams") != "both" or not cfg.pretrain or cfg.init_spatial or cfg.init_temporal:
        return {}
    twins = {part: {**cell, "streams": part} for part in ("spatial", "temporal")}
    if any(t not in cells for t in twins.values()):
        return {}
    inits = {}
    for part, twin in twins.items():
        run = out / _name(twin) / f"fold{cfg.fold}"
        if train(replace(cfg, streams=part, out=str(run))).get("interrupted"):
            return None
        inits[f"init_{part}"] = str(run / "best.pt")
    return inits


def _labels(cell: dict, base: TrainConfig) -> dict:
    """The architecture and input variant that made a row, when not grid axes; '-' without a temporal stream. A grid
    axis keeps its cell's value on every row: two spatial rows of arch=paper,released are two runs, and a '-' on
    both made them indistinguishable."""
    spatial = cell.get("streams", base.streams) == "spatial"
    return {k: "-" if spatial else str(getattr(base, k)) for k in ("arch", "input") if k not in cell}


def _protocol(res: list[dict]) -> str:
    """The protocol line of a cell's folds ('' when none finished; folds differ only in which fold is held out)."""
    return " / ".join(sorted({protocol.headline(r["protocol"]) for r in res if r.get("protocol")}))


def summarize_folds(res: list[dict]) -> dict:
    """Mean and std across the folds with a finite held-out score (a NaN fold is counted apart, never averaged)."""
    good = [r for r in res if all(r.get(k) is not None and np.isfinite(r[k]) for k in ("ccc_arousal", "ccc_valence"))]
    out = {"folds": len(good), "nan_folds": len(res) - len(good)}
    for k in ("ccc_arousal", "ccc_valence"):
        vals = np.array([r[k] for r in good], float)
        out[k] = float(vals.mean()) if len(vals) else float("nan")
        out[f"{k}_std"] = float(vals.std()) if len(vals) else float("nan")
    out["ccc_mean"] = (out["ccc_arousal"] + out["ccc_valence"]) / 2
    for part in ("face_only", "rescaled"):   # beside the scores: face frames only; the released code's rescaling
        vals = [r[part]["ccc_mean"] for r in good if isinstance(r.get(part), dict)]
        out[f"ccc_mean_{part}"] = float(np.mean(vals)) if len(vals) == len(good) and vals else float("nan")
    return out


EXTRA_COLUMNS = {"ccc_mean_face_only": "CCC mean (face frames)", "ccc_mean_rescaled": "CCC mean (rescaled)",
                 "ccc_mean_fold_mean": "CCC mean (mean of the folds' predictions)",
                 "ccc_mean_fold_mean_rescaled": "CCC mean (mean of the folds' rescaled predictions)"}
EXTRA_NOTES = {   # what the columns beside the plain scores are, in the table's header
    "ccc_mean_rescaled": "each fold's predictions rescaled to its training labels' std before scoring, as the "
                         "paper's released code scored (train/rescale.py); not what selected best.pt.",
    "ccc_mean_fold_mean": "the held-out split scored once on the mean of the fold models' predictions, as the "
                          "released code made its test predictions (files and predict.json in <cell>/fold_mean).",
    "ccc_mean_fold_mean_rescaled": "the same with each fold model's predictions rescaled first, as the released "
                                   "code submitted them."}


def _base_line(base: TrainConfig, keys: list[str]) -> str:
    """Every setting that decides the numbers (train/config.py's decisive ones) but the grid's axes, the cache and
    dataset (the Data line) and the fold (each row's mean is over its folds): the width, batch size, milestones,
    patience, seed... made the table's numbers as much as the grid did."""
    settings = config.decisive(base)
    if "streams" in keys or base.streams == "both":   # the two-stream rows' fine-tuning lr
        settings["finetune_lr"] = base.finetune_lr
    skip = {"cache", "dataset", "fold", *keys}
    return ", ".join(f"{k}={_plain(v)}" for k, v in settings.items() if k not in skip)


def _plain(v) -> str:
    if v is None:
        return "none"
    return "+".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def markdown(table: pd.DataFrame, keys: list[str], dataset: str, base: TrainConfig,
             read: dict[str, str] | None = None, fold_ids: list[int] | None = None,
             notes: list[str] | None = None) -> str:
    """A paper-style Markdown table: one row per cell, mean CCC across folds (± std), its architecture and input."""
    keys = [*keys, *(k for k in ("arch", "input") if k not in keys)]
    protocols = sorted({p for p in table.get("protocol", pd.Series(dtype=str)) if p})
    per_row = len(protocols) > 1
    extra = {k: name for k, name in EXTRA_COLUMNS.items() if k in table and table[k].notna().any()}
    head = [*keys, "CCC arousal", "CCC valence", "CCC mean", *extra.values(), "folds",
            *(["protocol"] if per_row else [])]
    lines = [f"# Ablation on {dataset}", "",
             (f"Base: {_base_line(base, keys)}. {_folds_text(fold_list(fold_ids, base.folds), base.folds)}, "
              "those with a finite score (± std across them); "
              "arch and input, where not grid axes, are '-' for spatial-only rows (no temporal stream: there "
              "an arch or input axis's value changes nothing)."
              + "".join(f" {EXTRA_COLUMNS[k]}: {EXTRA_NOTES[k]}" for k in extra if k in EXTRA_NOTES)), "",
             (protocols[0] if len(protocols) == 1 else "Protocol: per row (the grid changes it)." if per_row else
              "Protocol: none (no fold finished)."), "",
             f"Data: {dataset} in {Path(base.cache).resolve()}; every run read the same arrays (fingerprints: "
             + (", ".join(f"{a} {fp}" for a, fp in (read or {}).items()) or "none") + ").", "",
             *(line for note in notes or [] for line in (note, "")),   # runs under other threads, over fewer videos
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [str(r[k]) for k in keys]
        nan = f" ({r['nan_folds']} NaN)" if r["nan_folds"] else ""
        cells += [f"{r['ccc_arousal']:.3f} ± {r['ccc_arousal_std']:.3f}",
                  f"{r['ccc_valence']:.3f} ± {r['ccc_valence_std']:.3f}", f"{r['ccc_mean']:.3f}",
                  *(f"{r[k]:.3f}" for k in extra), f"{r['folds']}{nan}",
                  *([r["protocol"]] if per_row else [])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
