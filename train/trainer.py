"""Train MIMAMO Net from the feature cache: folds by video, SGD, 1-CCC loss, early stopping, exact resume.

Held-out rule (``split_videos``): when the cache has labelled ``test`` videos they are the held-out set and the
validation set is fold I of K (seeded) over the other labelled videos; otherwise all labelled videos are
shuffled (seeded) into K folds, fold I is held out and fold (I+1) mod K validates. Early stopping and best.pt
use the validation mean CCC; the held-out figures in metrics.json come from best.pt.

Exact resume: the shuffle order and the dropout stream are drawn from seeds made of (seed, epoch), and last.pt
(written atomically after every epoch) holds the model, optimiser, scheduler, RNG states, history, best score
and early-stopping counter, so a killed run resumed with ``resume=True`` ends with the same numbers.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from features.errors import BadInputError
from pipeline import store
from train import data, report
from train.metrics import ccc_loss, scores
from train.model import MimamoNet


@dataclass
class TrainConfig:
    """Every `cli.py train` flag. Defaults are the paper's (Aff-Wild scale); the demo passes its own."""

    cache: str = "zarr"
    dataset: str = "demo"
    out: str = "runs/demo"
    streams: str = "both"              # both | spatial | temporal
    input: str = "dphase"              # dphase | phase | flow
    window: int = 12                   # N motion rows per frame (4..16)
    arch: str = "paper"                # paper (4 blocks) | released (3 blocks)
    width: int = 64                    # first conv block's channels (the released code: 64)
    single_gru: bool = False           # keep a BiGRU in single-stream models (the paper has none)
    folds: int = 5
    fold: int = 0
    seed: int = 0
    epochs: int = 25
    lr: float = 1e-3
    finetune_lr: float | None = None   # lr of a two-stream model that starts from single-stream checkpoints
    milestones: tuple = (10, 20)       # lr x0.1 at these epochs
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 16               # sequences of `length` frames
    length: int = 64
    stride: int = 32
    patience: int = 5
    device: str = "cpu"
    num_workers: int = 2
    cache_mb: float = 64               # decoded-chunk cache per loader worker
    resume: bool = False
    pretrain: bool = True              # streams=both without init checkpoints: train the single streams first
    init_spatial: str | None = None
    init_temporal: str | None = None
    stop_after: int | None = None      # run at most this many epochs now, then stop as if killed (resume later)
    plots: bool = True                 # curves.png and predictions.png (matplotlib)
    threads: int | None = None         # torch CPU threads (1 is fastest on a busy shared machine)
    quiet: bool = False
    extra: dict = field(default_factory=dict)


def check_fingerprints(checkpoint_fps: dict, cache_fps: dict, path=None) -> None:
    """Raise BadInputError unless every array the checkpoint was trained on has the same fingerprint here."""
    bad = [f"{k}: trained on {v}, cache has {cache_fps.get(k, 'nothing')}"
           for k, v in sorted(checkpoint_fps.items()) if cache_fps.get(k) != v]
    if bad:
        raise BadInputError(path, "features were made differently from those the model was trained on ("
                            + "; ".join(bad) + ")", "recompute the features with the settings of the training "
                            "cache, or train a model on this cache")


def used_arrays(cfg: TrainConfig) -> list[str]:
    """Cache arrays a run reads (besides valid/labels)."""
    return (["resnet50"] if cfg.streams in ("both", "spatial") else []) + \
        (list(data.INPUTS[cfg.input]) if cfg.streams in ("both", "temporal") else [])


def split_videos(rows: list[dict], folds: int, fold: int, seed: int) -> dict[str, list[dict]]:
    """train/val/test video rows by the module docstring's rule (rows: labelled videos only)."""
    if not 0 <= fold < folds:
        raise BadInputError(None, f"--fold {fold} is not in 0..{folds - 1}", "pick a fold below --folds")
    rows = sorted(rows, key=lambda r: r["video"])
    test = [r for r in rows if r.get("split") == "test"]
    pool = [r for r in rows if r.get("split") != "test"]
    need = 2 if test else 3
    if folds < need or len(pool) < need:
        raise BadInputError(None, f"{len(pool)} labelled videos and --folds {folds}: too few to split by video",
                            f"use --folds >= {need} and a cache with at least {need} labelled videos")
    perm = np.random.default_rng(seed).permutation(len(pool))
    parts = [[pool[i] for i in sorted(p)] for p in np.array_split(perm, folds)]
    if test:
        val = parts[fold]
    else:
        test, val = parts[fold], parts[(fold + 1) % folds]
    held = {r["video"] for r in test + val}
    return {"train": [r for r in pool if r["video"] not in held], "val": val, "test": test}


def _fingerprints(rows: list[dict], names: list[str], cache) -> dict:
    fps = {}
    for name in names:
        seen = {r["fingerprints"].get(name) for r in rows}
        if None in seen:
            missing = [r["video"] for r in rows if name not in r["fingerprints"]][:3]
            raise BadInputError(cache, f"array {name!r} is missing for videos {missing}",
                                "run `cli.py features` with the stage/extra that makes it (e.g. --extras phase,flow)")
        if len(seen) > 1:
            raise BadInputError(cache, f"array {name!r} was made with different settings across videos ({seen})",
                                "recompute the features so every video uses the same settings")
        fps[name] = seen.pop()
    return fps


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _inputs(batch: dict, cfg: TrainConfig, device):
    rgb = batch["rgb"].to(device).float()
    m0 = data.windows(batch["m0"].to(device).float(), cfg.window)
    m1 = data.windows(batch["m1"].to(device).float(), cfg.window) if "m1" in batch else None
    return rgb, m0, m1


def _loss(model, batch, cfg, device, level):
    mask = batch["mask"].to(device)
    out = model(*_inputs(batch, cfg, device), mask=mask)
    if level == "video":
        target = batch["vlabel"].to(device)
        return ccc_loss(out["video"], target, torch.ones(len(target), dtype=torch.bool, device=device))
    return ccc_loss(out["frame"], batch["labels"].to(device), mask)


@torch.no_grad()
def predict(model, ds: data.SequenceDataset, cfg: TrainConfig, device) -> dict:
    """Per-video arrays: pred/labels [T, 2], valid [T], and the video-level output (weighted by frames)."""
    model.eval()
    res = {}
    for i, v in enumerate(ds.videos):
        n = int(v["n_frames"])
        res[i] = {"pred": np.full((n, 2), np.nan, np.float32), "labels": np.full((n, 2), np.nan, np.float32),
                  "valid": np.zeros(n, bool), "vsum": np.zeros(2), "vw": 0.0}
    for batch in data.loader(ds, cfg.batch_size, None, cfg.num_workers):
        own = batch["own"].to(device)
        out = model(*_inputs(batch, cfg, device), mask=own & batch["valid"].to(device))
        frame = out["frame"].float().cpu().numpy()
        video = out["video"].float().cpu().numpy()
        for b, vi in enumerate(batch["video_idx"].tolist()):
            o = batch["own"][b].numpy()
            fr = batch["frames"][b].numpy()[o]
            r = res[vi]
            r["pred"][fr] = frame[b][o]
            r["labels"][fr] = batch["labels"][b].numpy()[o]
            r["valid"][fr] = batch["valid"][b].numpy()[o]
            w = float((o & batch["valid"][b].numpy()).sum())
            r["vsum"] += w * video[b]   # the head is linear: the weighted mean of outputs = head(mean f_t)
            r["vw"] += w
    for r in res.values():
        r["video"] = r["vsum"] / r["vw"] if r["vw"] else np.full(2, np.nan)
    return res


def evaluate(res: dict, videos: list[dict], level: str) -> dict:
    """Overall and per-video scores from ``predict``'s output."""
    if level == "video":
        pred = np.stack([res[i]["video"] for i in range(len(videos))])
        lab = np.array([[v["video_arousal"], v["video_valence"]] for v in videos])
        out = scores(pred, lab)
        out["per_video"] = {v["video"]: {"arousal": float(pred[i, 0]), "valence": float(pred[i, 1]),
                                         "label_arousal": float(lab[i, 0]), "label_valence": float(lab[i, 1])}
                            for i, v in enumerate(videos)}
        return out
    pred = np.concatenate([res[i]["pred"] for i in range(len(videos))])
    lab = np.concatenate([res[i]["labels"] for i in range(len(videos))])
    valid = np.concatenate([res[i]["valid"] for i in range(len(videos))])
    out = scores(pred, lab, valid)
    out["per_video"] = {v["video"]: scores(res[i]["pred"], res[i]["labels"], res[i]["valid"])
                        for i, v in enumerate(videos)}
    return out


def _build(cfg: TrainConfig) -> tuple[MimamoNet, dict]:
    args = {"streams": cfg.streams, "window": cfg.window, "second_scale": len(data.INPUTS[cfg.input]) == 2,
                "arch": cfg.arch, "width": cfg.width, "gru": True if cfg.single_gru else None}
    return MimamoNet(**args), args


def _init_from(model: MimamoNet, path, part: str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    sub = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + ".")}
    if not sub:
        raise BadInputError(path, f"checkpoint has no {part} stream", f"pass a --streams {part} checkpoint")
    try:
        getattr(model, part).load_state_dict(sub)
    except RuntimeError as e:
        raise BadInputError(path, f"{part} weights do not fit this model ({str(e).splitlines()[0]})",
                            "train the single stream with the same --window/--input/--arch/--width") from None


def _save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)   # atomic: a kill never leaves a half-written checkpoint


def _pretrain(cfg: TrainConfig) -> TrainConfig:
    """Train (or reuse) the single-stream models in out/spatial and out/temporal; return cfg initialised from them."""
    inits = {}
    for part in ("spatial", "temporal"):
        given = cfg.init_spatial if part == "spatial" else cfg.init_temporal
        if given:
            inits[part] = given
            continue
        sub = replace(cfg, streams=part, out=str(Path(cfg.out) / part), init_spatial=None, init_temporal=None)
        if not (Path(sub.out) / "metrics.json").is_file():
            if not cfg.quiet:
                print(f"== single-stream {part} model first (into {sub.out})", file=sys.stderr)
            done = train(sub)
            if done.get("interrupted"):
                return None
        inits[part] = str(Path(sub.out) / "best.pt")
    return replace(cfg, init_spatial=inits["spatial"], init_temporal=inits["temporal"])


def train(cfg: TrainConfig) -> dict:
    """Train one model as ``cfg`` says; write checkpoints, logs, predictions and plots under cfg.out.

    Returns the held-out metrics (also in metrics.json), or {"interrupted": True, ...} after ``stop_after``.
    """
    if not 1 <= cfg.window <= 32:
        raise BadInputError(None, f"--window {cfg.window} is out of range", "use 4..16 as in the paper")
    if cfg.streams == "both" and cfg.pretrain and not (cfg.init_spatial and cfg.init_temporal):
        cfg = _pretrain(cfg)
        if cfg is None:
            return {"interrupted": True}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    # cuBLAS is deterministic only with a fixed workspace; must be set before CUDA initialises.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)

    rows = data.video_table(cfg.cache, cfg.dataset)
    framed = [r for r in rows if data.has_frame_labels(cfg.cache, cfg.dataset, r["video"])]
    level = "frame" if framed else "video"
    labelled = framed or [r for r in rows if np.isfinite(r["video_arousal"]) and np.isfinite(r["video_valence"])]
    if not labelled:
        raise BadInputError(Path(cfg.cache) / cfg.dataset, "no video in the cache has labels",
                            "train on a labelled dataset (features of the train split with annotations)")
    split = split_videos(labelled, cfg.folds, cfg.fold, cfg.seed)
    fps = _fingerprints(labelled, used_arrays(cfg), cfg.cache)
    mk = {"window": cfg.window, "input": cfg.input, "length": cfg.length, "level": level, "cache_mb": cfg.cache_mb}
    train_ds = data.SequenceDataset(cfg.cache, cfg.dataset, split["train"], stride=cfg.stride, **mk)
    val_ds = data.SequenceDataset(cfg.cache, cfg.dataset, split["val"], test=True, **mk)
    test_ds = data.SequenceDataset(cfg.cache, cfg.dataset, split["test"], test=True, **mk)

    _seed(cfg.seed)
    model, model_args = _build(cfg)
    if cfg.streams == "both" and cfg.init_spatial:
        _init_from(model, cfg.init_spatial, "spatial")
    if cfg.streams == "both" and cfg.init_temporal:
        _init_from(model, cfg.init_temporal, "temporal")
    model.to(device)
    initialised = cfg.streams == "both" and cfg.init_spatial and cfg.init_temporal
    lr = cfg.finetune_lr if initialised and cfg.finetune_lr is not None else cfg.lr
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=0.1)
    state = {"epoch": 0, "best": -float("inf"), "best_epoch": -1, "bad": 0, "stopped": False, "history": []}
    conf = {k: v for k, v in asdict(cfg).items() if k not in ("resume", "stop_after", "quiet", "num_workers", "threads", "plots")}
    conf["milestones"] = list(cfg.milestones)
    last = out / "last.pt"
    if cfg.resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        keys = ("streams", "input", "window", "arch", "width", "folds", "fold", "seed", "dataset", "length")
        diff = [k for k in keys if ck["config"].get(k) != conf.get(k)]
        if diff:
            raise BadInputError(last, f"--resume with different settings ({', '.join(diff)})",
                                "resume with the same flags, or use another --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        state = ck["state"]
        torch.set_rng_state(ck["rng"]["torch"])
    else:
        for stale in ("best.pt", "last.pt", "metrics.json"):   # a fresh run never mixes with an old one
            (out / stale).unlink(missing_ok=True)
    # how the features were made, so `predict` can make them the same way for new videos
    feature_settings = dict(store.open_video(cfg.cache, cfg.dataset, labelled[0]["video"]).attrs.get("settings", {}))
    ckmeta = {"config": conf, "model_args": model_args, "fingerprints": fps, "level": level,
              "feature_settings": feature_settings}

    runs = 0
    while state["epoch"] < cfg.epochs and not state["stopped"]:
        if cfg.stop_after is not None and runs >= cfg.stop_after:
            return {"interrupted": True, "epoch": state["epoch"]}
        e = state["epoch"]
        t0 = time.time()
        g = torch.Generator().manual_seed(cfg.seed * 1000 + e)
        order = torch.randperm(len(train_ds), generator=g).tolist()
        torch.manual_seed(cfg.seed * 1000 + e + 1)   # the dropout stream depends on (seed, epoch) only
        model.train()
        losses = []
        bar = tqdm(data.loader(train_ds, cfg.batch_size, order, cfg.num_workers, device.type == "cuda"),
                   desc=f"epoch {e + 1}/{cfg.epochs}", leave=False, file=sys.stderr, disable=cfg.quiet)
        for batch in bar:
            loss = _loss(model, batch, cfg, device, level)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        lr = opt.param_groups[0]["lr"]
        sched.step()
        val = evaluate(predict(model, val_ds, cfg, device), split["val"], level)
        score = val["ccc_mean"] if np.isfinite(val["ccc_mean"]) else -float("inf")
        best = score > state["best"]
        if best:
            state.update(best=score, best_epoch=e + 1, bad=0)
            _save({"model": model.state_dict(), "epoch": e + 1, "score": score, **ckmeta}, out / "best.pt")
        else:
            state["bad"] += 1
        state["stopped"] = state["bad"] >= cfg.patience
        row = {"epoch": e + 1, "lr": lr, "train_loss": float(np.mean(losses)) if losses else float("nan"),
               "val_loss": 1 - val["ccc_mean"], "val_ccc_arousal": val["ccc_arousal"],
               "val_ccc_valence": val["ccc_valence"], "val_ccc_mean": val["ccc_mean"],
               "seconds": round(time.time() - t0, 2)}
        state["history"].append(row)
        state["epoch"] = e + 1
        _save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "state": state,
               "rng": {"torch": torch.get_rng_state()}, **ckmeta}, last)
        report.write_log(out, state["history"])
        runs += 1
        if not cfg.quiet:
            print(f"epoch {e + 1}/{cfg.epochs} loss {row['train_loss']:.4f} val CCC arousal {val['ccc_arousal']:.3f} "
                  f"valence {val['ccc_valence']:.3f} mean {val['ccc_mean']:.3f} lr {lr:g} {row['seconds']:.1f}s"
                  + (" *best" if best else "") + (" (early stop)" if state["stopped"] else ""), flush=True)

    if (out / "best.pt").is_file():
        model.load_state_dict(torch.load(out / "best.pt", map_location="cpu", weights_only=False)["model"])
    res = predict(model, test_ds, cfg, device)
    metrics = evaluate(res, split["test"], level)
    metrics = {"split": "test" if any(r.get("split") == "test" for r in split["test"]) else f"fold {cfg.fold}",
               **{k: v for k, v in metrics.items() if k != "per_video"},
               "level": level, "best_epoch": state["best_epoch"], "best_val_ccc_mean": state["best"],
               "epochs_run": state["epoch"], "early_stopped": state["stopped"],
               "videos": {k: [r["video"] for r in v] for k, v in split.items()},
               "per_video": metrics["per_video"], "config": conf, "fingerprints": fps}
    report.write_outputs(out, metrics, res, split["test"], state["history"], cfg.plots)
    return metrics
