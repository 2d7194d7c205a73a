"""Evaluation protocols: which videos a run trains, selects and reports on, how it samples them, how it scores them.

A run's protocol follows from the cache and its settings, never from the dataset's name (``splits``, when set, keeps
only the videos of those splits: the others are not read, so they are neither held out nor trained on):

- Held out. The cache records each video's split (`split` in the index and the group's attrs, named as
  data_manifest.yaml says: `train`, `validation`, `test`). A labelled `test` split is held out; else a labelled
  `validation` split is (Aff-Wild2's Validation_Set: the ABAW protocol), unless ``pool_validation`` puts it into the
  folds; else nothing is, and fold I of K is held out (cross-validation). Held-out videos are never trained or
  selected on: early stopping and best.pt use a validation fold drawn from the other labelled videos.
- ``pool_validation`` by default (None): video-level datasets pool (the paper's OMG protocol: 5-fold
  cross-validation over Train and Validation merged), frame-level datasets hold validation out (ABAW).
- Sampling. Frame level: sequences of L consecutive frames (stride S in training). Video level (one label per
  utterance): one snippet per second of video (a frame and its motion window), at most L snippets per sequence, with
  a random start per video and epoch in training (drawn from the seed and the epoch, so resume is exact) and one
  sampling at evaluation: the first start that puts a snippet on a face (0 when frame 0 has one). As the paper does.
- Scoring. Frame level: every labelled frame, frames without a face taking the nearest prediction in time; the
  face-only scores are kept beside (``face_only``). Every frame-level dataset, not only the Aff-Wild layout: the
  Aff-Wild benchmark and ABAW's validation scoring both count every annotated frame, so face-only numbers are not
  comparable with published ones, and a model is charged for stretches where it sees no face. Video level: one
  prediction per utterance (the output layer on f_t averaged over its snippets), CCC over utterances.
- Folds are drawn over recordings, not cache entries: an OMG video's utterances (`<video>__<utterance>`) and a
  two-person Aff-Wild2 video's sides (`<video>_left`/`_right`) fall in one fold, as the released code split OMG by
  video.
"""
from __future__ import annotations

from dataclasses import replace

from train.config import TrainConfig

EVALUATION_SPLITS = ("test", "validation")   # held out when labelled, in this order of preference
_SIDES = ("_left", "_right")


def recording(video: str) -> str:
    """The recording a cache entry comes from (folds never separate the entries of one recording)."""
    if "__" in video:                        # OMG: <video>__<utterance>
        return video.split("__", 1)[0]
    for side in _SIDES:                      # Aff-Wild2: one video file, one entry per person
        if video.endswith(side):
            return video[: -len(side)]
    return video


def resolve(cfg: TrainConfig, level: str) -> TrainConfig:
    """cfg with ``pool_validation`` decided (None: pooled for video-level labels, held out for frame-level)."""
    if cfg.pool_validation is not None:
        return cfg
    return replace(cfg, pool_validation=level == "video")


def held_out_split(rows: list[dict], pool_validation: bool) -> str | None:
    """The split held out from training and selection, from the labelled videos' splits; None: cross-validation."""
    have = {r.get("split") for r in rows}
    for split in EVALUATION_SPLITS:
        if split in have and not (split == "validation" and pool_validation):
            return split
    return None


def describe(cfg: TrainConfig, rows: list[dict], level: str) -> dict:
    """The protocol that makes a run's numbers, for metrics.json, its identity and the ablation tables."""
    held = held_out_split(rows, bool(cfg.pool_validation))
    pooled = sorted({str(r.get("split")) for r in rows if r.get("split") != held})
    name = "omg" if level == "video" else {"validation": "abaw", "test": "affwild"}.get(held, "cross-validation")
    if level == "video":
        sampling = (f"one snippet (a frame and its {cfg.window}-row motion window) per second, at most {cfg.length} "
                    "per sequence; training: a random start per video and epoch (seeded); evaluation: one sampling")
        scoring = "one prediction per utterance (mean f_t over its snippets), CCC over utterances"
    else:
        sampling = f"sequences of {cfg.length} consecutive frames, stride {cfg.stride} in training"
        scoring = "all labelled frames (no face: the nearest prediction in time); face-only scores in face_only"
    return {"name": name, "level": level, "held_out": held or f"fold {cfg.fold}", "trained_on": pooled,
            "pool_validation": bool(cfg.pool_validation),
            "folds": f"{cfg.folds} folds (seed {cfg.seed}) over the {'+'.join(pooled)} videos, by recording",
            "selection": f"fold {cfg.fold if held else (cfg.fold + 1) % cfg.folds} (early stopping and best.pt)",
            "sampling": sampling, "scoring": scoring}


def headline(protocol: dict) -> str:
    """One line for a table header, the same for every fold of a protocol."""
    if protocol["held_out"].startswith("fold "):
        held = (f"fold I of {protocol['folds']} is held out and reported, fold I+1 selects (early stopping, "
                "best.pt)")
    else:
        held = (f"the {protocol['held_out']} split is held out and reported (never trained or selected on); "
                f"a fold of {protocol['folds']} selects (early stopping, best.pt)")
    return (f"Protocol {protocol['name']}: {held}; sampling: {protocol['sampling']}; scoring: {protocol['scoring']}.")
