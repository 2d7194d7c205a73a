"""Train MIMAMO Net from the feature cache: folds by video, SGD, 1-CCC loss, early stopping, exact resume.

    train(cfg) = prepare   the videos (each checked in its group, train/videos.py), the protocol (train/protocol.py:
                           which split is held out, how videos are sampled and scored), the single-stream runs a
                           two-stream run starts from (trained on its own split), the arrays the model reads and
                           their one fingerprint: together with the deciding settings and TRAINER_VERSION, the
                           run's *identity*
               -> reuse    (sub-runs and ablation cells) a finished run of the same identity is returned as is
               -> start    the model and its init check (init checkpoints never saw this run's held-out videos),
                           the optimiser, and the resume check (last.pt must have this run's identity)
               -> fit      epochs, best.pt on the validation mean CCC, last.pt after every epoch
               -> finalize held-out scores from best.pt; predictions, plots, then metrics.json (config, identity,
                           fingerprints, init): a folder with a metrics.json holds a finished run

Exact resume: the shuffle order, the dropout stream and (video-level labels) the snippet starts are drawn from seeds
made of (seed, epoch), and last.pt
(written atomically after every epoch) holds the model, optimiser, scheduler, RNG state, history, best score and
early-stopping counter, so a killed run resumed with ``resume=True`` ends with the same numbers, when it resumes
under the same torch thread count and device: torch's CPU reductions split their sums by thread, and CPU and CUDA
round differently. Neither is part of the identity (a resume on a cluster may land on another node), so last.pt and
metrics.json record them for each stretch of epochs one invocation trained (``threads_used``), and a resume under
others says its epochs will not equal an uninterrupted run's bit for bit.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from features.errors import BadInputError
from pipeline import arrays
from train import augment, checkpoint, config, data, protocol, report, rescale, run_lock, videos
from train.config import TrainConfig, used_arrays
from train.evaluate import evaluate, inputs, predict, present
from train.metrics import ccc_loss
from train.model import MimamoNet
from train.run_folder import no_best, note_threads, other_threads, resumable, reusable, say
from train.videos import check_fingerprints, split_videos

__all__ = ["TrainConfig", "train", "prepare", "split_videos", "check_fingerprints", "used_arrays", "predict",
           "evaluate", "TRAINER_VERSION"]

# Part of every run's identity. Bump it when what a run computes from the same settings and data changes (the loss,
# the sampling, the model's maths, the scoring): a finished run or ablation cell of an earlier version is then trained
# again instead of reused beside runs of this one, and its last.pt is not resumed (predict's own is
# predict_reuse.VERSION). Runs made before it was recorded read "trainer_version: None -> 1".
TRAINER_VERSION = "1"


@dataclass
class Run:
    """A prepared run: its configuration, videos, the arrays it reads, its identity and init checkpoints."""

    cfg: TrainConfig
    sel: videos.Selection
    split: dict[str, list[dict]]
    protocol: dict                  # train/protocol.py: held-out split, selection, sampling, scoring
    identity: dict
    init: dict[str, str]            # part -> checkpoint path (two-stream runs started from single streams)

    @cached_property
    def label_std(self) -> list[float]:
        """The training videos' labels' std (arousal, valence; train/rescale.py), read when the run trains or
        scores, not when a finished one is reused."""
        return rescale.label_std(self.cfg.cache, self.cfg.dataset, self.split["train"], self.sel.level)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


@dataclass
class Fit:
    """What changes while a run trains; last.pt holds all of it."""

    model: MimamoNet
    model_args: dict
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    state: dict
    device: torch.device
    threads: int                    # torch's CPU threads in this invocation, as set (not as asked: None keeps torch's)


def train(cfg: TrainConfig) -> dict:
    """Train one model as ``cfg`` says; write checkpoints, logs, predictions and plots under cfg.out.

    Returns the held-out metrics (also in metrics.json), or {"interrupted": True, ...} after ``stop_after``. One run
    at a time per cfg.out, from before the single streams are trained into it (train/run_lock.py).
    """
    config.check(cfg)   # a flag no run can use is refused before the lock creates the folder
    with run_lock.held(cfg.out, "train"):
        return _train(cfg)


def _train(cfg: TrainConfig) -> dict:
    run = prepare(cfg)
    if run is None:
        return {"interrupted": True}
    done = reusable(run)
    if done is not None:
        return done
    fit_ = start(run)
    if not fit(run, fit_):
        return {"interrupted": True, "epoch": fit_.state["epoch"]}
    return finalize(run, fit_)


# ---------------------------------------------------------------- prepare


def prepare(cfg: TrainConfig) -> Run | None:
    """Check the settings, select the videos, decide the protocol, train the single streams first (streams=both);
    None if interrupted."""
    config.check(cfg)
    sel = videos.select(cfg.cache, cfg.dataset, used_arrays(cfg), cfg.skip_unusable, extra=augment.extra_arrays(cfg),
                        splits=cfg.splits)
    augment.check_pairs(cfg, sel.per_video)   # the mirrored arrays made as the clean ones (--augment flip)
    for video, why in sel.left_out.items():   # also in metrics.json
        say(cfg, f"left out {video}: {why}", always=True)
    for note in sel.notes:
        say(cfg, note, always=True)
    cfg = protocol.resolve(cfg, sel.level)
    if cfg.streams == "both" and cfg.pretrain and not (cfg.init_spatial and cfg.init_temporal):
        cfg = _pretrain(cfg)
        if cfg is None:
            return None
    proto = protocol.describe(cfg, sel.rows, sel.level)
    split = split_videos(sel.rows, cfg.folds, cfg.fold, cfg.seed, protocol.held_out_split(sel.rows, cfg.pool_validation))
    init = {p: str(Path(path).resolve()) for p in ("spatial", "temporal")
            if cfg.streams == "both" and (path := getattr(cfg, f"init_{p}"))}
    identity = {"trainer_version": TRAINER_VERSION, "config": config.decisive(cfg), "protocol": proto,
                "init": {p: checkpoint.sha256(path) for p, path in init.items()},
                "fingerprints": sel.fingerprints, "sources": sel.sources,
                "videos": {k: [r["video"] for r in v] for k, v in split.items()}}
    return Run(cfg, sel, split, proto, identity, init)


def _pretrain(cfg: TrainConfig) -> TrainConfig | None:
    """Train the single-stream models on this run's own split into OUT/spatial and OUT/temporal (a finished one of
    the same identity is reused, any other retrained); return cfg initialised from them (None if interrupted)."""
    inits = {}
    for part in ("spatial", "temporal"):
        given = getattr(cfg, f"init_{part}")
        if given:
            inits[part] = given
            continue
        sub = replace(cfg, streams=part, out=str(Path(cfg.out) / part), init_spatial=None, init_temporal=None,
                      reuse=True, resume=False)
        say(cfg, f"== single-stream {part} model first (into {sub.out})")
        if train(sub).get("interrupted"):
            return None
        inits[part] = str(Path(sub.out) / "best.pt")
    return replace(cfg, init_spatial=inits["spatial"], init_temporal=inits["temporal"])


def start(run: Run) -> Fit:
    """The model (init checkpoints checked and loaded), optimiser and scheduler; resumed from last.pt if asked."""
    cfg = run.cfg
    run.out.mkdir(parents=True, exist_ok=True)
    # cuBLAS is deterministic only with a fixed workspace; must be set before CUDA initialises.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    _seed(cfg.seed)
    model, model_args = build(cfg)
    for part, path in run.init.items():
        init_from(model, path, part, run)
    device = torch.device(cfg.device)
    model.to(device)
    lr = cfg.finetune_lr if len(run.init) == 2 and cfg.finetune_lr is not None else cfg.lr
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=0.1)
    state = {"epoch": 0, "best": -float("inf"), "best_epoch": -1, "bad": 0, "stopped": False, "history": [],
             "threads_used": []}
    fit_ = Fit(model, model_args, opt, sched, state, device, torch.get_num_threads())
    ck = resumable(run)
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        checkpoint.load_sched(sched, ck["sched"])
        fit_.state = ck["state"]
        torch.set_rng_state(ck["rng"]["torch"])
        other_threads(run, fit_)
    return fit_


def build(cfg: TrainConfig) -> tuple[MimamoNet, dict]:
    """The model a config describes, and the arguments that rebuild it (saved in checkpoints)."""
    args = {"streams": cfg.streams, "window": cfg.window, "second_scale": len(arrays.input_arrays(cfg.input)) == 2,
            "arch": cfg.arch, "width": cfg.width, "gru": True if cfg.single_gru else None}
    return MimamoNet(**args), args


def init_from(model: MimamoNet, path, part: str, run: Run) -> None:
    """The init check: a single-stream ``part`` checkpoint, trained on none of this run's validation or test
    videos and on the same features; then its weights go into the model's ``part`` stream."""
    ck = checkpoint.load(path)
    if ck["model_args"].get("streams") != part:
        raise BadInputError(path, f"not a --streams {part} checkpoint (streams={ck['model_args'].get('streams')})",
                            f"pass a --streams {part} checkpoint")
    its = ck.get("identity")
    if its is None:
        raise BadInputError(path, "written by an older mimamo: it does not record which videos it was trained on, "
                            "so it cannot be checked against this run's held-out videos",
                            f"train the {part} stream again (without --init-{part}, --streams both trains it first)")
    mine = run.identity["videos"]
    leaked = sorted(set(its["videos"]["train"]) & set(mine["val"] + mine["test"])
                    | set(its["videos"]["val"]) & set(mine["test"]))
    if leaked:
        raise BadInputError(path, f"the {part} model was trained or selected on videos this run holds out "
                            f"({', '.join(leaked[:5])}{' ...' if len(leaked) > 5 else ''})",
                            f"train the {part} stream with this run's --folds/--fold/--seed, or let --streams both "
                            "train it first")
    _check_init_sources(its, run, path, part)
    _check_init_labels(ck.get("labels_by_video") or {}, its, run, path, part)
    theirs = used_arrays(config.from_dict(ck["config"]))
    check_fingerprints({k: its["fingerprints"].get(k) for k in theirs}, run.sel.fingerprints, path)
    sub = {k[len(part) + 1:]: v for k, v in ck["model"].items() if k.startswith(part + ".")}
    try:
        getattr(model, part).load_state_dict(sub)
    except RuntimeError as e:
        raise BadInputError(path, f"{part} weights do not fit this model ({str(e).splitlines()[0]})",
                            "train the single stream with the same --window/--input/--arch/--width") from None


def _check_init_sources(its: dict, run: Run, path, part: str) -> None:
    """Refuse an init checkpoint that learnt from a video whose group was rebuilt from another file since: the
    fingerprints say how arrays are made, not from what, so only the sources tell that the data behind a name
    changed (checkpoints written before sources were recorded cannot be checked, and are not refused for it)."""
    then, now = its.get("sources") or {}, run.sel.sources
    changed = _changed_since_init(its, then, now)
    if changed:
        v, names = changed[0], _first_five(changed)
        raise BadInputError(path, f"the {part} model learnt from {len(changed)} video(s) whose cached features were "
                            f"made again from another source since ({names}; {v}: {then[v]} -> {now[v]})",
                            f"train the {part} stream again on this cache (or let --streams both train it first)")


def _check_init_labels(then: dict, its: dict, run: Run, path, part: str) -> None:
    """Refuse an init checkpoint that learnt from labels that have changed since (a `features` run after a label
    fix): the two-stream model would start from streams fitted to the old targets of its own training videos. The
    labels' one digest cannot tell, as it covers each run's own videos; checkpoints written before the per-video
    record are not checked for it."""
    now = _labels_by_video(run)
    changed = _changed_since_init(its, then, now)
    if changed:
        v = changed[0]
        raise BadInputError(path, f"the {part} model learnt from labels that have changed since ({len(changed)} "
                            f"video(s): {_first_five(changed)}; {v}: {then[v]} -> {now[v]})",
                            f"train the {part} stream again on this cache (or let --streams both train it first)")


def _changed_since_init(its: dict, then: dict, now: dict) -> list[str]:
    """The videos an init checkpoint learnt from (its train and selection videos) whose record ``then`` (when it
    was trained) differs from ``now``; videos recorded on one side only are not compared."""
    seen = its["videos"]["train"] + its["videos"]["val"]
    return sorted(v for v in seen if v in then and v in now and then[v] != now[v])


def _first_five(videos: list[str]) -> str:
    return ", ".join(videos[:5]) + (" ..." if len(videos) > 5 else "")


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- fit


def _datasets(run: Run) -> dict[str, data.SequenceDataset]:
    cfg = run.cfg
    return {k: (augment.train_dataset_class(cfg) if k == "train" else data.SequenceDataset)(
        cfg.cache, cfg.dataset, rows, **data.run_arguments(cfg, run.sel.level, train=k == "train"))
        for k, rows in run.split.items()}


def loss(model: MimamoNet, batch: dict, window: int, device, level: str) -> torch.Tensor:
    """1-CCC over the valid labelled frames, or (level="video") over the sequences that have a valid frame."""
    mask = batch["mask"].to(device)
    out = model(*inputs(batch, window, device), mask=mask, present=present(batch, device))
    if level == "video":
        # a sequence without a valid frame has no f_t to average: its output is the head's bias, not a prediction
        return ccc_loss(out["video"], batch["vlabel"].to(device), mask.any(1))
    return ccc_loss(out["frame"], batch["labels"].to(device), mask)


def _meta(run: Run, fit_: Fit) -> dict:
    return {"config": config.as_dict(run.cfg), "identity": run.identity, "model_args": fit_.model_args,
            "fingerprints": run.sel.fingerprints, "level": run.sel.level, "feature_settings": run.sel.feature_settings,
            "labels_by_video": _labels_by_video(run), "label_std": run.label_std}


def _labels_by_video(run: Run) -> dict[str, str]:
    """Each selected video's labels fingerprint. Recorded outside the identity, whose one digest covers the run's own
    videos: runs over other video sets (another fold layout, --skip-unusable) cannot be compared by it, these can
    (init_from's check, and ablate's and robustness's tables, videos.one_data)."""
    return {v: fps.get("labels") for v, fps in sorted(run.sel.per_video.items())}


def fit(run: Run, f: Fit) -> bool:
    """Epochs until the last or early stopping; False when ``stop_after`` stopped it as if killed."""
    cfg, state, model = run.cfg, f.state, f.model
    ds = _datasets(run)
    meta = _meta(run, f)
    runs = 0
    while state["epoch"] < cfg.epochs and not state["stopped"]:
        if cfg.stop_after is not None and runs >= cfg.stop_after:
            return False
        e = state["epoch"]
        t0 = time.time()
        g = torch.Generator().manual_seed(cfg.seed * 1000 + e)
        order = torch.randperm(len(ds["train"]), generator=g).tolist()
        torch.manual_seed(cfg.seed * 1000 + e + 1)   # the dropout stream depends on (seed, epoch) only
        ds["train"].set_epoch(cfg.seed, e)   # snippet starts (video-level labels), the flipped half (--augment flip)
        model.train()
        losses = []
        bar = tqdm(data.loader(ds["train"], cfg.batch_size, order, cfg.num_workers, f.device.type == "cuda"),
                   desc=f"epoch {e + 1}/{cfg.epochs}", leave=False, file=sys.stderr, disable=cfg.quiet)
        for batch in bar:
            if int((batch["frames"] >= 0).sum()) < 2:
                continue   # one snippet in all: BatchNorm cannot normalise a single row (and CCC needs two)
            step = loss(model, batch, cfg.window, f.device, run.sel.level)
            f.opt.zero_grad(set_to_none=True)
            step.backward()
            f.opt.step()
            losses.append(step.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        lr = f.opt.param_groups[0]["lr"]
        f.sched.step()
        val = evaluate(predict(model, ds["val"], cfg.window, cfg.batch_size, cfg.num_workers, f.device,
                               None if cfg.quiet else f"epoch {e + 1}/{cfg.epochs}: selection videos"),
                       run.split["val"], run.sel.level)
        score = val["ccc_mean"] if np.isfinite(val["ccc_mean"]) else -float("inf")
        best = score > state["best"] or state["best_epoch"] < 0   # there is always a best.pt
        if best:
            state.update(best=score, best_epoch=e + 1, bad=0)
            checkpoint.save({"model": model.state_dict(), "epoch": e + 1, "score": score, **meta}, run.out / "best.pt")
        else:
            state["bad"] += 1
        state["stopped"] = state["bad"] >= cfg.patience
        row = {"epoch": e + 1, "lr": lr, "train_loss": float(np.mean(losses)) if losses else float("nan"),
               "val_loss": 1 - val["ccc_mean"], "val_ccc_arousal": val["ccc_arousal"],
               "val_ccc_valence": val["ccc_valence"], "val_ccc_mean": val["ccc_mean"],
               "seconds": round(time.time() - t0, 2)}
        state["history"].append(row)
        state["epoch"] = e + 1
        note_threads(state, f, e + 1, first=runs == 0)
        checkpoint.save({"model": model.state_dict(), "opt": f.opt.state_dict(), "sched": checkpoint.sched_state(f.sched),
                         "state": state, "rng": {"torch": torch.get_rng_state()}, **meta}, run.out / "last.pt")
        report.write_log(run.out, state["history"])
        same_data(run)
        runs += 1
        say(cfg, f"epoch {e + 1}/{cfg.epochs} loss {row['train_loss']:.4f} val CCC arousal {val['ccc_arousal']:.3f} "
                 f"valence {val['ccc_valence']:.3f} mean {val['ccc_mean']:.3f} lr {lr:g} {row['seconds']:.1f}s"
                 + (" *best" if best else "") + (" (early stop)" if state["stopped"] else ""))
    return True


def same_data(run: Run) -> None:
    """Stop the run when a `features` run changed what it reads since it started (videos.changed_since): its
    numbers would mix data from before and after under the fingerprints of before. best.pt and last.pt go with it:
    no result of mixed data is left to predict with, nor to resume from (once the data is restored, a resume would
    otherwise carry on the mixed weights under the run's first identity)."""
    changed = videos.changed_since(run.cfg.cache, run.cfg.dataset, run.sel.per_video, run.sel.sources)
    if not changed:
        return
    for name in ("best.pt", "last.pt"):
        (run.out / name).unlink(missing_ok=True)
    raise BadInputError(run.out, f"the cache changed while this run trained ({videos.changed_listing(changed)}): "
                        "a `features` run updated what it reads, so its numbers would mix data from before and after; "
                        "best.pt, last.pt and metrics.json are not kept", "let the `features` run finish, then run "
                        "`train` again, without --resume since the data it began on is gone")


# ---------------------------------------------------------------- finalize


def finalize(run: Run, f: Fit) -> dict:
    """Score the held-out videos with best.pt; write the predictions, plots and metrics.json; return the metrics."""
    cfg, state = run.cfg, f.state
    broken = no_best(run, state)
    if broken is not None:   # never score other weights under the best epoch's name
        raise BadInputError(run.out, f"{broken}, so its held-out scores cannot be made",
                            "train the run again without --resume (or use another --out)")
    if state["best_epoch"] >= 1:   # else no epoch ran (epochs 0): the initial weights are the run's
        f.model.load_state_dict(checkpoint.load(run.out / "best.pt")["model"])
    res = predict(f.model, _datasets(run)["test"], cfg.window, cfg.batch_size, cfg.num_workers, f.device,
                  None if cfg.quiet else "held-out videos")
    scores = evaluate(res, run.split["test"], run.sel.level, run.label_std)
    same_data(run)   # the held-out scores too came from the data the run selected
    temporal = config.uses_temporal(cfg)
    held = protocol.held_out_split(run.sel.rows, cfg.pool_validation)
    metrics = {"split": held or f"fold {cfg.fold}", "protocol": run.protocol,
               **{k: v for k, v in scores.items() if k != "per_video"},
               "level": run.sel.level, "best_epoch": state["best_epoch"], "best_val_ccc_mean": state["best"],
               "epochs_run": state["epoch"], "early_stopped": state["stopped"],
               # the torch threads each stretch of epochs trained under, and those the held-out videos were scored
               # under: they change the numbers, and the config holds this invocation's settings only
               "threads_used": state.get("threads_used", []), "threads_scored": f.threads,
               "streams": cfg.streams, "arch": cfg.arch if temporal else None, "input": cfg.input if temporal else None,
               "init": run.init or None, "videos": run.identity["videos"], "left_out": run.sel.left_out,
               "not_updated": run.sel.not_updated,
               "per_video": scores["per_video"], "config": config.as_dict(cfg), "fingerprints": run.sel.fingerprints,
               "labels_by_video": _labels_by_video(run), "identity": run.identity}
    report.write_outputs(run.out, metrics, res, run.split["test"], state["history"], cfg.plots)
    return metrics
