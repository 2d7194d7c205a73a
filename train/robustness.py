"""The paper's Fig. 5, robustness to illumination: the temporal single-stream model trained and scored (as `train`:
same protocol, folds and flags) on motion inputs corrupted by a per-frame gamma, for each beta and input.

Frame t of a video becomes 255 (u)^g, u = face/255, g ~ U[1-beta, 1+beta] drawn from (gamma seed, sha256 of the
whole video id, t) (pipeline/face_transforms.py). The corruption is applied to the *cached* 48x48 aligned faces, so
face detection and alignment saw clean frames and only the motion representation (ΔPhase, phase, optical flow)
meets it: the cleaner test of the claim "phase differences are robust to illumination changes, optical flow is not".
(``features --gamma-jitter`` corrupts the frames before alignment instead: then the landmarks, hence the crops, move
too, and the comparison mixes the tracker's robustness into the motion input's.)

The corrupted inputs are variants in the cache (``dphase@gamma0.2``, ``dphase@paper+gamma0.2``, ``flow@gamma0.2``)
made from the faces alone (pipeline/derive.py) under their own fingerprints, so a rerun reuses them; beta 0 is the
clean input itself, made the same way when the cache lacks it (a cache without `--extras flow`). Each (input, beta,
fold) is a training run in OUT/<input>_beta=<b>/fold<i> (`_seed=<K>` after the beta for a --gamma-seed K other than
0), reused when its identity (settings, fingerprints, videos) is the same, as `ablate` does. Writes robustness.csv,
robustness.md, robustness.png (CCC against beta, a line per input and dimension) and robustness.json (every cell's
identity), each through a rename, robustness.md last; a rerun first marks an earlier robustness.md stale and
removes the others (train/ablate.py's mark_stale), so a rerun killed part way leaves no table looking current. Like
`predict`, this command makes features (from cached faces only; no video is opened).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import BadInputError
from pipeline import arrays, face_transforms, store
from pipeline.wording import counted
from train import config, protocol, run_lock
from train.ablate import fewer_videos, fold_list, mark_stale, read_not_updated, summarize_folds
from train.config import TrainConfig
from train.report import _plt, atomic, clean
from train.trainer import train
from train.videos import one_data, select


@dataclass(frozen=True)
class Cell:
    """One point of the figure: an input at one beta, and the cache input that holds it."""

    input: str          # as asked: dphase, dphase@paper, flow, phase
    beta: float
    reads: str          # the (corrupted) model input read from the cache: dphase@gamma0.2
    seed: int = 0       # --gamma-seed

    @property
    def name(self) -> str:
        """The cell's folder: another gamma seed is another folder (it would otherwise retrain this one's runs in
        place, and the first seed's again when it comes back); beta 0, the clean input, is every seed's."""
        return f"{self.input}_beta={self.beta:g}" + (f"_seed={self.seed}" if self.seed and self.beta else "")


def corrupted_input(text: str, beta: float, seed: int = 0) -> str:
    """The cache input of a model input at one beta: ("dphase@paper", 0.2) -> "dphase@paper+gamma0.2"; beta 0: itself."""
    kind, variant = arrays.parse_input(text)
    if kind.source != "face48":
        raise BadInputError(None, f"input {text!r} is not a motion input", "use dphase, phase or flow (or a variant)")
    if face_transforms.split_variant(variant)[1]:
        raise BadInputError(None, f"input {text!r} already has face transforms", "give the clean input: dphase@paper")
    v = face_transforms.with_gamma(variant, beta, seed)
    return kind.name + (f"@{v}" if v else "")


def parse_betas(text: str) -> list[float]:
    """"0,0.2,0.4" -> [0.0, 0.2, 0.4] (each in [0, 1)); a bad list is a clear error."""
    try:
        betas = [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise BadInputError(None, f"--betas {text!r} is not a list of numbers", "e.g. --betas 0,0.2,0.4,0.6,0.8") from None
    if not betas or any(not 0 <= b < 1 for b in betas) or len(set(betas)) != len(betas):
        raise BadInputError(None, f"--betas {text!r}: each beta once, in [0, 1)", "e.g. --betas 0,0.2,0.4,0.6,0.8")
    # a corrupted input is named, and made, from the beta as '%g' prints it (gamma0.3): 0.3000001 read gamma0.3, and
    # its row claimed a beta that made none of its numbers (the run of 0.3, reused); '%g' writes 1e-05 for 0.00001,
    # which no variant name can hold
    for b in betas:
        if "e" in f"{b:g}":
            raise BadInputError(None, f"--betas {text!r}: {b!r} is below 0.0001, which the corrupted inputs' names "
                                "(gammaB) cannot write", "give betas from 0.0001 up, e.g. --betas 0,0.2,0.4,0.6,0.8")
        if float(f"{b:g}") != b:
            raise BadInputError(None, f"--betas {text!r}: {b!r} would read gamma{b:g}, the input of beta {b:g}: the "
                                "corrupted inputs are named and made from the beta as Python's '%g' prints it (6 "
                                "significant digits)", f"give each beta as '%g' prints it, here {b:g}")
    return sorted(betas)


def robustness(cache, dataset: str, betas: list[float], inputs: list[str], out, base: TrainConfig,
               fold_ids: list[int] | None = None, gamma_seed: int = 0, progress: bool = True, echo=print) -> pd.DataFrame:
    """Make the corrupted inputs, train and score every (input, beta, fold), write the tables and the figure."""
    out = Path(out)
    folds = fold_list(fold_ids, base.folds)   # checked before the inputs are made
    cells = [Cell(i, b, corrupted_input(i, b, gamma_seed), gamma_seed) for i in dict.fromkeys(inputs) for b in betas]
    # one run per folder, from before minutes of making inputs; its runs are trained under it (train/run_lock.py)
    with run_lock.held(out, "robustness"):
        return _run(cache, dataset, out, cells, folds, base, gamma_seed, progress, echo)


def _run(cache, dataset: str, out: Path, cells: list[Cell], folds: list[int], base: TrainConfig, gamma_seed: int,
         progress: bool, echo) -> pd.DataFrame:
    """Make the inputs of ``cells``, train and score each on ``folds``, write the tables and the figure."""
    from pipeline.derive import derive

    # beta 0's clean inputs too: a cache made without `--extras flow` must not fail at flow's first training, after
    # every ΔPhase run (they are made from the cached faces like the corrupted ones, under the same fingerprints)
    wanted = list(dict.fromkeys(n for c in cells for n in arrays.input_arrays(c.reads)))
    # only the videos training can select: an unlabelled test set (ABAW's, from the test list) is never read
    labelled = [r["video"] for r in select(cache, dataset, [], skip_unusable=True, splits=base.splits).rows]
    _clean_faces(cache, dataset, labelled)
    done = derive(cache, dataset, wanted, videos=labelled, device=base.device, progress=progress, echo=echo)
    echo(f"clean and corrupted inputs: {len(wanted)} arrays on {done['videos']} labelled videos, {done['updated']} "
         "videos updated (the others already held them under the same fingerprints)")
    base = replace(base, cache=str(cache), dataset=dataset, streams="temporal")
    # an earlier table in this folder stops looking current before any run is trained again (train/ablate.py)
    mark_stale(out, "robustness", TABLES[-1], TABLES[:-1], "runs")
    rows, runs = [], {}
    for c in cells:
        res = []
        for f in folds:
            if not base.quiet:
                print(f"== {c.name} (reads {c.reads}) fold {f}", file=sys.stderr)
            m = train(replace(base, input=c.reads, fold=f, out=str(out / c.name / f"fold{f}"), reuse=True,
                              resume=False))
            if not m.get("interrupted"):
                res.append(m)
                runs[f"{c.name}/fold{f}"] = m
        fps = res[0]["fingerprints"] if res else {}
        rows.append({"input": c.input, "beta": c.beta, "reads": c.reads,
                     "fingerprint": ";".join(f"{n}={fps.get(n)}" for n in arrays.input_arrays(c.reads)),
                     **summarize_folds(res)})
    one_data(runs, out, "robustness")   # and each row's fingerprints below are those of all its folds
    table = pd.DataFrame(rows)
    for _, grp in table.groupby("input", sort=False):   # the change from the clean input, per input
        clean0 = grp[grp.beta == 0].ccc_mean
        table.loc[grp.index, "ccc_mean_change"] = grp.ccc_mean - (clean0.iloc[0] if len(clean0) else np.nan)
    prov = provenance(cache, dataset, base, folds, gamma_seed, runs)
    prov["notes"] = [n for n in (fewer_videos(runs), read_not_updated(runs)) if n]   # rows over fewer videos; arrays
    # made before a failed update (pipeline/not_updated.py)
    out.mkdir(parents=True, exist_ok=True)
    # each through a rename, robustness.md last: one without the stale mark comes with the others of its run
    atomic(out / "robustness.csv", lambda p: table.assign(dataset=dataset, gamma_seed=gamma_seed).to_csv(
        p, index=False, float_format="%.4f"))
    atomic(out / "robustness.json", lambda p: p.write_text(json.dumps(clean(prov), indent=1) + "\n"))
    atomic(out / "robustness.png", lambda p: plot(p, table, prov))
    atomic(out / "robustness.md", lambda p: p.write_text(markdown(table, prov)))
    return table


# what robustness writes in OUT, the Markdown table last (mark_stale marks it and removes the others)
TABLES = ("robustness.csv", "robustness.json", "robustness.png", "robustness.md")


def _clean_faces(cache, dataset: str, videos: list[str]) -> None:
    """Refuse faces cut from frames `features --gamma-jitter` corrupted: beta 0 would not be clean, every other beta
    would corrupt twice, and the tables would say alignment saw clean frames."""
    jittered = {}
    for v in videos:
        made = dict(store.open_video(cache, dataset, v).attrs.get("made_with") or {}).get("face48") or {}
        if float(made.get("gamma_jitter") or 0):
            jittered[v] = made["gamma_jitter"]
    if jittered:
        some = ", ".join(f"{v} ({b})" for v, b in sorted(jittered.items())[:3])
        raise BadInputError(store.dataset_dir(cache, dataset), f"the faces of {counted(len(jittered), 'video')} were cut from "
                            f"frames corrupted by `features --gamma-jitter` ({some}{' ...' if len(jittered) > 3 else ''}"
                            "): this experiment corrupts clean faces", "extract the faces without --gamma-jitter (into "
                            "another --cache, to keep these), then run robustness on that cache")


def provenance(cache, dataset: str, base: TrainConfig, folds: list[int], gamma_seed: int, runs: dict) -> dict:
    """What made the numbers: the cache, the settings every cell shares, the gamma seed, each run's identity."""
    shared = {k: v for k, v in config.decisive(base).items() if k not in ("input", "fold", "cache", "dataset")}
    any_run = next(iter(runs.values()), {})
    videos = any_run.get("videos") or {}
    return {"cache": str(Path(cache).resolve()), "dataset": dataset, "folds": folds, "gamma_seed": gamma_seed,
            "corruption": "per-frame gamma u^g, g ~ U[1-beta, 1+beta] from (gamma_seed, sha256(video id), frame), "
                          "applied to the cached 48x48 aligned faces (alignment saw clean frames)",
            "face48": _face_fingerprint(cache, dataset, videos),
            "settings": shared, "videos": {k: len(v) for k, v in videos.items()},
            "protocol": " / ".join(sorted({protocol.headline(m["protocol"]) for m in runs.values() if m.get("protocol")})),
            "test_videos": videos.get("test", []),
            "runs": {k: {"identity": m.get("identity"), "split": m.get("split")} for k, m in runs.items()}}


def _face_fingerprint(cache, dataset: str, videos: dict) -> str | None:
    names = sorted({v for vs in videos.values() for v in vs})
    fps = {store.video_fingerprints(cache, dataset, v).get("face48") for v in names}
    return fps.pop() if len(fps) == 1 else None


# the settings _settings_line names in its own words; every other deciding one follows them by name
_NAMED = ("streams", "folds", "window", "arch", "width", "epochs", "lr", "milestones", "batch_size", "seed", "augment",
          "splits")


def _settings_line(prov: dict) -> str:
    """What made every row: the data, the folds and every deciding setting (the patience, length, stride, momentum...
    made the numbers as much as the epochs did; ablate's Base line names them all too)."""
    s = prov["settings"]
    n = prov["videos"]
    rest = "".join(f", {k} {'none' if v is None else v}" for k, v in s.items() if k not in _NAMED)
    return (f"dataset {prov['dataset']} (cache {prov['cache']}; face48 {prov['face48']}); videos train/val/test "
            f"{n.get('train', 0)}/{n.get('val', 0)}/{n.get('test', 0)}, folds {prov['folds']} of {s['folds']}; "
            f"temporal stream, window {s['window']}, arch {s['arch']}, width {s['width']}, epochs {s['epochs']}, "
            f"lr {s['lr']}, milestones {s['milestones']}, batch {s['batch_size']}, seed {s['seed']}, "
            f"augment {s.get('augment') or 'none'}"
            f"{', splits ' + '+'.join(s['splits']) + ' only' if s.get('splits') else ''}{rest}; "
            f"gamma seed {prov['gamma_seed']}")


def markdown(table: pd.DataFrame, prov: dict) -> str:
    """The figure's numbers as Markdown: a wide table (beta x input) and a row per cell with what it read."""
    inputs = list(dict.fromkeys(table.input))
    head = ["beta", *[f"{i} {d}" for i in inputs for d in ("arousal", "valence", "mean")]]
    lines = ["# Illumination robustness (paper Fig. 5)", "",
             "Held-out CCC of the temporal single-stream model trained and scored on inputs computed from the cached "
             f"48x48 faces under a per-frame gamma u^g, g ~ U[1-beta, 1+beta] ({prov['corruption']}). Mean over the "
             "folds with a finite score.", "", f"Made from: {_settings_line(prov)}.", "",
             *(line for note in prov.get("notes") or [] for line in (note, "")),
             prov["protocol"] or "Protocol: none (no fold finished).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in sorted(set(table.beta)):
        cells = [f"{b:g}"]
        for i in inputs:
            r = table[(table.input == i) & (table.beta == b)].iloc[0]
            cells += [f"{r.ccc_arousal:.3f}", f"{r.ccc_valence:.3f}", f"{r.ccc_mean:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| input | beta | reads | CCC mean change from beta 0 | folds | fingerprint |", "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        nan = f" ({r.nan_folds} NaN)" if r.nan_folds else ""
        lines.append(f"| {r.input} | {r.beta:g} | {r.reads} | {r.ccc_mean_change:+.3f} | {r.folds}{nan} | {r.fingerprint} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, table: pd.DataFrame, prov: dict) -> None:
    """CCC against beta, a line per input (colour) and dimension (solid arousal, dashed valence), as Fig. 5."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (inp, grp) in enumerate(table.groupby("input", sort=False)):
        grp = grp.sort_values("beta")
        for dim, style in (("arousal", "o-"), ("valence", "s--")):
            ax.errorbar(grp.beta, grp[f"ccc_{dim}"], yerr=grp[f"ccc_{dim}_std"].where(grp.folds > 1), fmt=style,
                        color=colours[k % len(colours)], capsize=3, label=f"{inp} {dim}")
    ax.set(xlabel="beta (per-frame gamma g ~ U[1-beta, 1+beta])", ylabel="CCC (held-out)",
           title=f"Illumination robustness, temporal stream: {prov['dataset']}")
    ax.set_xticks(sorted(set(table.beta)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, _wrap(f"Made from: {_settings_line(prov)}. Corrupted: cached 48x48 faces.", 120),
             fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _wrap(text: str, width: int) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width))
