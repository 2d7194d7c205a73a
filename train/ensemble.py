"""The models `predict` runs: one checkpoint, or several whose predictions are averaged; and their scores.

Several checkpoints are the released code's test protocol: it trained a model on each fold of its 5-fold
cross-validation and submitted, for the Aff-Wild test set, the mean of the five models' predictions
(Aff-wild-exps/merge_test_predictions.py). `predict --checkpoint A --checkpoint B ...` does the same. Every model is
checked against the features it reads as one model is, the per-frame predictions (per-utterance for a model of one
label per video) are averaged with equal weights, and the files, predict.json and the plots name every checkpoint.
Frames without a face have no prediction in any model (the cache's `valid`), so each mean is over all the models.

Averaged are only models that predict the same thing: all per-frame, or all one label per video. The same checkpoint
twice (by sha256) is refused: it would weigh one model double without saying so.

Scores. Where the videos predicted are labelled, `predict` scores the predictions (the mean, for several models) as
`train` scores its held-out videos (train/evaluate.py: every labelled frame, no face taking the nearest prediction;
one prediction per utterance), so one model on its held-out split gives its metrics.json's numbers. Scores of videos
a model was trained or selected on are not held-out scores: they are marked so, and the videos named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from features.errors import BadInputError
from pipeline import store, unscored
from pipeline.wording import counted
from train import checkpoint, config, data
from train.config import TrainConfig, used_arrays
from train.evaluate import evaluate, predict
from train.model import MimamoNet
from train.rescale import rescale
from train.videos import NO_ANNOTATED_FRAME, record_text, source_record


def load_checkpoint(path: str | Path) -> tuple[MimamoNet, TrainConfig, dict]:
    """The model (eval mode), its training config, and the raw checkpoint dict."""
    ck = checkpoint.load(path)
    try:
        model = MimamoNet(**ck["model_args"])
        model.load_state_dict(ck["model"])
        cfg = config.from_dict(ck["config"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise BadInputError(path, f"not a mimamo checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})",
                            "pass the best.pt written by `cli.py train`") from None
    return model.eval(), cfg, ck


@dataclass
class Member:
    """One checkpoint of the models predict runs."""

    path: Path
    model: MimamoNet
    cfg: TrainConfig
    ck: dict
    sha: str

    @property
    def level(self) -> str:
        return self.ck.get("level") or "frame"

    def describe(self) -> dict:
        """What predict.json records of it: the file, its sha256, its settings and the data it was trained on."""
        conf = (self.ck.get("identity") or {}).get("config") or {}
        return {"checkpoint": str(self.path.resolve()), "checkpoint_sha256": self.sha,
                "trained_on": {k: conf.get(k) for k in ("cache", "dataset")}, "config": self.ck.get("config")}


def load(paths: list[str | Path]) -> list[Member]:
    """The checkpoints as Members, refused when they cannot be averaged (module docstring)."""
    members, by_sha = [], {}
    for p in paths:
        model, cfg, ck = load_checkpoint(p)
        sha = checkpoint.sha256(p)
        if sha in by_sha:
            raise BadInputError(p, f"the same model as {by_sha[sha]} (sha256 {sha[:12]}); averaging it twice would "
                                "weigh it double", "give each checkpoint once")
        by_sha[sha] = p
        members.append(Member(Path(p), model, cfg, ck, sha))
    levels = {m.level for m in members}
    if len(levels) > 1:
        per = ", ".join(f"{m.path}: {'one label per video' if m.level == 'video' else 'per frame'}" for m in members)
        raise BadInputError(None, f"these models predict different things and cannot be averaged ({per})",
                            "average models trained on the same kind of labels")
    return members


def arrays(members: list[Member]) -> list[str]:
    """The cache arrays the models read, each once, in the order the models name them."""
    return list(dict.fromkeys(name for m in members for name in used_arrays(m.cfg)))


def outputs(members: list[Member], cache, dataset: str, rows: list[dict], device: str, progress: bool) -> list[dict]:
    """Each model's ``evaluate.predict`` per-video arrays for ``rows`` (``mean`` combines them)."""
    runs = []
    for k, m in enumerate(members):
        ds = data.SequenceDataset(cache, dataset, rows, **data.run_arguments(m.cfg, m.level, train=False))
        dev = torch.device(device)
        what = f"predicting {counted(len(rows), 'video')}" + (f" (model {k + 1} of {len(members)})" if len(members) > 1 else "")
        runs.append(predict(m.model.to(dev), ds, m.cfg.window, m.cfg.batch_size, 0, dev, what if progress else None))
    return runs


def can_rescale(members: list[Member]) -> None:
    """Refuse --rescale for a checkpoint that does not keep its training labels' std."""
    for m in members:
        if m.ck.get("label_std") is None:
            raise BadInputError(m.path, "this checkpoint does not keep its training labels' std, which --rescale "
                                "needs (it was written before train kept it)", "train it again, or predict without "
                                "--rescale")


def rescaled(runs: list[dict], members: list[Member], level: str) -> list[dict]:
    """Each model's predictions rescaled over the whole set, to its training labels' std, as the released code
    wrote its test predictions (train/rescale.py; ``can_rescale`` first)."""
    out = []
    for run, m in zip(runs, members):
        std = m.ck["label_std"]
        new = {i: dict(r) for i, r in run.items()}
        if level == "video":
            ref = np.stack([r["video"] for r in run.values()])
            for r in new.values():
                r["video"] = rescale(r["video"][None], std, ref)[0]
        else:
            ref = np.concatenate([r["pred"][np.asarray(r["valid"], bool)] for r in run.values()])
            for r in new.values():
                r["pred"] = rescale(r["pred"], std, ref).astype(np.float32)
        out.append(new)
    return out


def mean(runs: list[dict]) -> dict:
    """Equal-weight means of several models' per-video predictions (frames, and the video-level output)."""
    if len(runs) == 1:
        return runs[0]
    out = {}
    for i, first in runs[0].items():
        out[i] = dict(first)
        out[i]["pred"] = np.mean([r[i]["pred"] for r in runs], axis=0).astype(np.float32)
        out[i]["video"] = np.mean([r[i]["video"] for r in runs], axis=0)
    return out


def seen_by(members: list[Member], cache, dataset: str, videos: list[str]) -> dict[str, list[str]]:
    """{video: [checkpoints]} for the videos a model was trained or selected on: the same video of the same dataset,
    read from the cache the model was trained on or from a copy of it (a cache moved to scratch space, say), known by
    its group recording the source the run recorded (videos.source_record: frame count and content identities)."""
    here, records, out = str(Path(cache).resolve()), {}, {}
    for m in members:
        ident = m.ck.get("identity") or {}
        conf = ident.get("config") or {}
        if conf.get("dataset") != dataset:
            continue
        used = set(ident.get("videos", {}).get("train", []) + ident.get("videos", {}).get("val", []))
        sources = ident.get("sources") or {}
        for v in sorted(set(videos) & used):
            if v not in records:
                records[v] = _record(cache, dataset, v)
            if conf.get("cache") == here or (v in sources and record_text(sources[v]) == records[v]):
                out.setdefault(v, []).append(str(m.path))
    return out


def _record(cache, dataset: str, video: str) -> str | None:
    """The source record of a video's group here, comparable with a checkpoint's (None without a group)."""
    try:
        return record_text(source_record(store.open_video(cache, dataset, video).attrs))
    except Exception:   # no group: nothing to compare, so not known to be the same video
        return None



def score(runs: list[dict], rows: list[dict], members: list[Member], seen: dict[str, list[str]],
          labels: dict[str, str]) -> dict | None:
    """The scores of the labelled videos among ``rows`` (None if none is), as `train` scores held-out videos, with
    what made them: the videos, their labels' fingerprints, the protocol's scoring and whether they are held out;
    ``rescaled``: as the released code scored (train/rescale.py), each model's predictions rescaled, then averaged."""
    level = members[0].level
    res = mean(runs)
    if level == "video":
        keep = [i for i, r in enumerate(rows) if unscored.finite_label(r["video_arousal"], r["video_valence"])]
    else:
        keep = [i for i in range(len(rows)) if np.isfinite(res[i]["labels"]).all(1).any()]
    # a labelled video with nothing to score it against (every line -5; a label that is not a number): said, as
    # train says it
    left_out = {r["video"]: unscored.not_a_label(r["video_arousal"], r["video_valence"]) if level == "video"
                else NO_ANNOTATED_FRAME for i, r in enumerate(rows) if i not in keep and _labelled(r)}
    # a labelled video without a prediction (no face anywhere) was counted among the videos scored, and scored as none
    faceless = [i for i in keep if not np.isfinite(res[i]["video"] if level == "video" else res[i]["pred"]).any()]
    left_out.update({rows[i]["video"]: unscored.NO_PREDICTION for i in faceless})
    keep = [i for i in keep if i not in faceless]
    # unlabelled videos of a split scored (a clip the labelled test CSV has no row for): predicted, not scored
    left_out.update(unscored.unlabelled_beside(rows, {str(rows[i]["split"]) for i in keep}))
    if not keep:
        return {"videos": [], "left_out": left_out} if left_out else None
    videos = [rows[i] for i in keep]
    out = evaluate({j: res[i] for j, i in enumerate(keep)}, videos, level)
    protocol = (members[0].ck.get("identity") or {}).get("protocol") or {}
    names = [r["video"] for r in videos]
    out.update(videos=names, labels={v: labels.get(v) for v in names}, scoring=protocol.get("scoring"),
               models=len(members), held_out=not (set(names) & set(seen)),
               seen={v: seen[v] for v in names if v in seen}, rescaled=_rescaled(runs, keep, videos, members, level),
               left_out=left_out)
    return out


def _labelled(row: dict) -> bool:
    """Whether an index row says its video came with labels (``labelled`` True; unknown in indexes made before)."""
    flag = row.get("labelled")
    return flag is not None and flag is not pd.NA and not (isinstance(flag, float) and np.isnan(flag)) and bool(flag)


def _rescaled(runs: list[dict], keep: list[int], videos: list[dict], members: list[Member], level: str) -> dict | None:
    """Scores of the mean of each model's predictions rescaled to its training labels' std (over the videos scored);
    None for a checkpoint written before it kept that std."""
    if any(m.ck.get("label_std") is None for m in members):
        return None
    subs = [{j: dict(run[i]) for j, i in enumerate(keep)} for run in runs]
    out = evaluate(mean(rescaled(subs, members, level)), videos, level)
    return {**{k: v for k, v in out.items() if k not in ("per_video", "face_only", "unscored")},
            "label_std": [m.ck["label_std"] for m in members]}
