"""`cli.py predict`: a trained model on new videos, or on videos already in a feature cache; per-frame files.

From video files: features are computed with the settings recorded in the checkpoint (motion settings, face
tracker, seed) into a cache beside the outputs (`<out>/cache`, dataset `videos`), so a second predict on the same
videos is instant. From a cache (`--cache DIR --dataset NAME [--split S]`): the videos a `features` run extracted,
e.g. a test set extracted by the same command as the training set, so its features match by construction.

Either way the arrays' fingerprints must equal those the model was trained on: other backbone weights, other motion
settings or other code versions are refused with a message saying which array differs (and, from a cache, on which
videos). Each video's arrays are checked in its own group (``store.check_arrays``); a video that cannot be read is
reported as failed, with the command that repairs it. Checkpoints are read with ``torch.load(weights_only=True)``.

Every run also writes `predict.json`: the checkpoint (path, sha256, the run that made it), the cache, dataset and
split read, the fingerprints of the arrays the model read, the format and the videos written or failed, so the
per-video files say what data and model made them.

Formats: ``csv`` writes `<video>.csv` (frame, time, arousal, valence, valid; no prediction where there is no face)
and `<video>.png`. ``abaw`` writes the ABAW challenge's `<video>.txt`: header `valence,arousal`, one line per frame
of the video, every frame filled (a frame without a face takes the nearest prediction in time, as the released code
did), values clipped to [-1, 1]; a labelled video whose annotation file has more or fewer lines (--label-slack)
gets the annotation's count (write_abaw). With ``sample`` (the organisers' sample submission of the 3rd ABAW
onward) ``abaw`` writes instead the one file those challenges take, `abaw_va_submission.txt`: the sample's rows, in
its order, with our values (train/abaw_sample.py). A model trained on one label per video (OMG) predicts one line per
video into `predictions.csv` (video, arousal, valence, snippets), sampled one snippet per second as in training;
``omg`` writes instead the OMG challenge's `omg_submission.csv` (video, utterance, arousal, valence), the rows of
the organisers' CSV of the split in its order (train/omg_table.py).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from features.errors import BadInputError
from pipeline import extract, graph, store
from pipeline.manifest import videos_from_files
from train import checkpoint, config, data
from train.abaw_sample import Sample, missing_entries, read_sample, write_submission
from train.config import TrainConfig, used_arrays
from train.evaluate import fill_nearest, predict
from train.model import MimamoNet
from train.omg_table import OmgTable, read_table
from train.omg_table import write_submission as write_omg
from train.report import save_captioned
from train.videos import changed_listing, changed_since, check_fingerprints, usable

FORMATS = ("csv", "abaw", "omg")


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


def feature_settings(ck: dict, weights: str | None, device: str) -> extract.Settings:
    """The extraction settings the training cache used, with the user's weights file and device."""
    from features.backbone import resolve_weights

    saved = dict(ck.get("feature_settings") or {})
    names = {f.name for f in dataclasses.fields(extract.Settings)}
    saved = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in names}
    was_random = str(saved.get("weights", "random")) == "random"
    w = weights if weights is not None else ("random" if was_random else None)
    saved.update(weights="random" if w == "random" else resolve_weights(w), device=device)
    return extract.Settings(**saved)


def trained_face_sources(ck: dict) -> set[str]:
    """Where the training videos' faces came from (video, cropped_aligned, openface), as the run recorded them."""
    sources = (ck.get("identity") or {}).get("sources") or {}
    return {str((rec[2] or {}).get("faces") or "video") for rec in sources.values()
            if isinstance(rec, list) and len(rec) > 2}


def _check_format(fmt: str, ck: dict, path, sample=None) -> Sample | OmgTable | None:
    """Refuse a format the model cannot fill; the parsed organisers' file, if one is given: the ABAW sample
    (abaw) or the OMG CSV whose rows the submission takes (omg, where it is needed)."""
    if fmt not in FORMATS:
        raise BadInputError(None, f"--format {fmt!r} is not one of {', '.join(FORMATS)}", "pick one of them")
    if sample is not None and fmt == "csv":
        raise BadInputError(sample, "--sample is the organisers' file of a challenge's submission format",
                            "add --format abaw (ABAW's sample submission) or --format omg (OMG's CSV of the split)")
    if fmt == "abaw" and ck.get("level") == "video":
        raise BadInputError(path, "--format abaw writes one line per frame, but this model was trained on one label "
                            "per video (OMG)", "use --format omg (with the organisers' CSV) or csv")
    if fmt == "omg" and ck.get("level") != "video":
        raise BadInputError(path, "--format omg writes one line per utterance, but this model was trained on "
                            "per-frame labels", "use --format abaw or csv")
    if fmt == "omg" and sample is None:
        raise BadInputError(None, "--format omg writes the rows of the organisers' CSV of the split, in its order "
                            "(their script pairs rows by position)", "pass it with --sample, e.g. --sample "
                            "/data/OMG/omg_TestVideos_WithoutLabels.csv")
    if sample is None:
        return None
    return read_table(sample) if fmt == "omg" else read_sample(sample)


def _sample_rows(sample: Sample | OmgTable | None, rows: list[dict], failed: list,
                 why: dict[str, str]) -> tuple[list, list]:
    """The rows and failures of the sample's entries (all of them without a sample); refused if an entry has no
    row (``why`` says why): the submission takes only, and all of, its entries."""
    if sample is None:
        return rows, failed
    missing_entries(sample, {r["video"] for r in rows}, why)
    wanted = set(sample.order())
    return [r for r in rows if r["video"] in wanted], [f for f in failed if f[0] in wanted]


def predict_videos(videos: list[str | Path], checkpoint_path: str | Path, out: str | Path, *, fmt: str = "csv",
                   weights: str | None = None, device: str = "cpu", workers: int | None = None, progress: bool = True,
                   sample: str | Path | None = None, echo=print) -> dict:
    """Features, then the model, for each video; returns {"written": [paths], "failed": [(video, error)]}.
    ``sample``: the ABAW sample submission (fmt abaw), whose entries are the videos' file names without suffix."""
    model, cfg, ck = load_checkpoint(checkpoint_path)
    if fmt == "omg":   # its rows are <video>__<utterance> entries; files are named utterance_1.mp4 in every video
        raise BadInputError(None, "--format omg reads the utterances from a cache (their ids join video and "
                            "utterance)", "extract them with `features --dataset omg`, then predict with --cache "
                            "DIR --dataset omg --split SPLIT")
    if other := sorted(trained_face_sources(ck) - {"video"}):   # said before minutes of extraction, not after
        raise BadInputError(checkpoint_path, f"this model was trained on faces from {' and '.join(other)} (not our "
                            "tracking of the video); video files get faces from our tracking and alignment, whose "
                            "features differ", f"extract them with the training cache's face source (`features "
                            f"--faces {other[0]}`; a challenge's test entries through the manifest's test_list), then "
                            "predict with --cache DIR --dataset NAME --split SPLIT")
    sample = _check_format(fmt, ck, checkpoint_path, sample)
    sha = checkpoint.sha256(checkpoint_path)   # once: predict.json and the plots' captions both name it
    out = Path(out)
    cache = out / "cache"
    entries = videos_from_files(videos)
    s = feature_settings(ck, weights, device)
    summary = graph.run(entries, cache, "videos", s, workers=workers or min(len(entries), 2), progress=progress,
                        echo=echo)
    failed = [(r["video"], r["error"]) for r in summary.failed]
    names = used_arrays(cfg)
    tried = [e.video for e in entries if e.video not in {v for v, _ in failed}]
    fps, bad = usable(cache, "videos", tried, [*names, "valid"], skip=True)
    failed += [(v, f"{why} (run `{store.repair_command(cache, 'videos', names)}`)") for v, why in bad.items()]
    for have in fps.values():
        check_fingerprints({k: ck["fingerprints"].get(k) for k in names}, have, checkpoint_path)
    rows = [r for r in data.video_table(cache, "videos") if r["video"] in fps]
    rows, failed = _sample_rows(sample, rows, failed, dict(failed))
    res = run_model(model, cfg, ck, cache, "videos", rows, out, fmt, device, sample,
                    made_by(checkpoint_path, sha, ck, cache, "videos"), progress)
    result = {"written": res["written"], "failed": failed + res["failed"], "notes": res.get("notes") or {}}
    write_provenance(out, checkpoint_path, sha, ck, cache, "videos", None, fmt, names, result, sample)
    return result


def predict_cache(cache: str | Path, dataset: str, checkpoint_path: str | Path, out: str | Path, *,
                  split: str | None = None, fmt: str = "csv", device: str = "cpu", sample: str | Path | None = None,
                  progress: bool = False, echo=print) -> dict:
    """The model on a cached dataset's videos (one split, or all); returns {"written": [...], "failed": [...]}.

    Every video is checked in its group; the arrays the model reads must carry the checkpoint's fingerprints on
    every video, else nothing is predicted and the error names the arrays and the videos.
    """
    model, cfg, ck = load_checkpoint(checkpoint_path)
    sha = checkpoint.sha256(checkpoint_path)   # once: predict.json and the plots' captions both name it
    sample = _check_format(fmt, ck, checkpoint_path, sample)
    idx = store.read_index(cache, dataset)
    if idx is None:
        raise BadInputError(store.dataset_dir(cache, dataset), f"no feature cache for dataset {dataset!r}",
                            f"run `python cli.py features --dataset {dataset} --cache {cache}` first")
    elsewhere = {}   # why a sample's entry outside the split is not predicted
    if split is not None:
        elsewhere = {r["video"]: f"in split {r['split']!r} of the cache, not {split!r}"
                     for r in idx[idx.split != split].to_dict("records")}
        idx = idx[idx.split == split]
        if idx.empty:
            raise BadInputError(store.dataset_dir(cache, dataset), f"no video of split {split!r} in the cache",
                                f"splits there: {', '.join(sorted(map(str, store.read_index(cache, dataset).split.unique())))}")
    names = used_arrays(cfg)
    failed = [(r["video"], f"extraction failed: {r['error']}") for r in idx.to_dict("records")
              if r.get("status") == "failed"]
    hints: dict[str, str] = {}
    fps, bad = usable(cache, dataset, sorted(set(idx.video) - {v for v, _ in failed}), [*names, "valid", "labels"],
                      skip=True, hints=hints)
    failed += [(v, f"{why} ({hints[v]})") for v, why in bad.items()]
    _same_features(fps, ck["fingerprints"], names, cache, dataset, checkpoint_path)
    _say_if_seen(ck, cache, dataset, sorted(fps), echo)
    rows = [r for r in data.video_table(cache, dataset) if r["video"] in fps]
    rows, failed = _sample_rows(sample, rows, failed, {**elsewhere, **dict(failed)})
    res = run_model(model, cfg, ck, cache, dataset, rows, Path(out), fmt, device, sample,
                    made_by(checkpoint_path, sha, ck, cache, dataset), progress)
    changed = changed_since(cache, dataset, {r["video"]: fps[r["video"]] for r in rows})
    if changed:   # a `features` run updated them meanwhile: the files could mix data from before and after
        for path in res["written"]:
            Path(path).unlink(missing_ok=True)
        raise BadInputError(store.dataset_dir(cache, dataset), f"the cache changed while predicting "
                            f"({changed_listing(changed)}); the files written are removed",
                            "let the `features` run finish, then predict again")
    result = {"written": res["written"], "failed": failed + res["failed"], "notes": res.get("notes") or {}}
    write_provenance(Path(out), checkpoint_path, sha, ck, cache, dataset, split, fmt, names, result, sample)
    return result


def write_provenance(out: Path, checkpoint_path, sha: str, ck: dict, cache, dataset: str, split: str | None,
                     fmt: str, names: list[str], result: dict, sample: Sample | OmgTable | None = None) -> Path:
    """`predict.json`: the model and the data that made the files in ``out`` (module docstring)."""
    ident = ck.get("identity") or {}
    made = {"checkpoint": str(Path(checkpoint_path).resolve()), "checkpoint_sha256": sha,
            "trained_on": {k: (ident.get("config") or {}).get(k) for k in ("cache", "dataset")},
            "config": ck.get("config"), "cache": str(Path(cache).resolve()), "dataset": dataset, "split": split,
            "format": fmt, "fingerprints": {k: ck["fingerprints"].get(k) for k in [*names, "valid"]},
            "written": sorted(str(Path(p).name) for p in result["written"]),
            "failed": {video: why for video, why in result["failed"]}, "notes": result.get("notes") or {},
            "abaw_sample": sample.describe() if isinstance(sample, Sample) else None,
            "omg_table": sample.describe() if isinstance(sample, OmgTable) else None}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "predict.json"
    path.write_text(json.dumps(made, indent=1, default=str) + "\n")
    return path


def _same_features(fps: dict[str, dict], trained: dict, names: list[str], cache, dataset: str, path) -> None:
    """Refuse when any video's arrays were made differently from the training cache's (naming arrays and videos)."""
    bad: dict[str, list[str]] = {}
    for video, have in sorted(fps.items()):
        for k in names:
            if have.get(k) != trained.get(k):
                bad.setdefault(f"{k}: trained on {trained.get(k)}, cache has {have.get(k)}", []).append(video)
    if bad:
        desc = "; ".join(f"{what} ({', '.join(vs[:4])}{' ...' if len(vs) > 4 else ''})" for what, vs in bad.items())
        raise BadInputError(path, f"features in {store.dataset_dir(cache, dataset)} were made differently from those "
                            f"the model was trained on ({desc})", "extract them with the `features` settings of the "
                            "training cache (same weights, motion settings, code), or train a model on this cache")


def _say_if_seen(ck: dict, cache, dataset: str, videos: list[str], echo) -> None:
    """A note when predicting videos this model was trained or selected on (same cache and dataset)."""
    ident = ck.get("identity") or {}
    conf = ident.get("config") or {}
    if conf.get("dataset") != dataset or conf.get("cache") != str(Path(cache).resolve()):
        return
    seen = sorted(set(videos) & set(ident.get("videos", {}).get("train", []) + ident.get("videos", {}).get("val", [])))
    if seen:
        echo(f"note: {len(seen)} of these videos were used to train or select this model "
             f"({', '.join(seen[:4])}{' ...' if len(seen) > 4 else ''}); their predictions are not held-out scores")


def made_by(checkpoint_path, sha: str, ck: dict, cache, dataset: str) -> str:
    """The caption of the per-video plots: the model (file, sha256, settings, the data it was trained on) and the
    data it read here; predict.json holds the whole of it."""
    c = (ck.get("identity") or {}).get("config") or ck.get("config") or {}
    conf = ck.get("config") or {}
    return (f"model {checkpoint_path} (sha256 {sha[:12]}; streams {conf.get('streams')}, input {conf.get('input')}, "
            f"arch {conf.get('arch')}; trained on {c.get('dataset')} in {c.get('cache')})\n"
            f"read: {dataset} in {cache}; see predict.json")


def run_model(model: MimamoNet, cfg: TrainConfig, ck: dict, cache, dataset: str, rows: list[dict], out: Path,
              fmt: str, device: str, sample: Sample | OmgTable | None = None, caption: str | None = None,
              progress: bool = False) -> dict:
    """The model over checked cached videos; writes the files of ``fmt`` (with ``sample``: the one ABAW submission);
    {"written": [...], "failed": [...], "notes": {video: note}}."""
    written, failed = [], []
    if not rows:
        return {"written": written, "failed": failed}
    out.mkdir(parents=True, exist_ok=True)
    level = ck.get("level") or "frame"
    ds = data.SequenceDataset(cache, dataset, rows, window=cfg.window, input=cfg.input, streams=cfg.streams,
                              length=cfg.length, stride=cfg.length, test=True, cache_mb=cfg.cache_mb, level=level,
                              sampling="snippets" if level == "video" else "frames")
    dev = torch.device(device)
    res = predict(model.to(dev), ds, cfg.window, cfg.batch_size, 0, dev,
                  f"predicting {len(rows)} videos" if progress else None)
    if level == "video":
        table = pd.DataFrame([{"video": r["video"], "arousal": res[i]["video"][0], "valence": res[i]["video"][1],
                               "snippets": int(res[i]["vw"])} for i, r in enumerate(rows)])
        faceless = {v: "no face in any of its snippets: no prediction" for v in table.video[table.snippets == 0]}
        if sample is not None:
            missing_entries(sample, set(table.video) - set(faceless), faceless)
            return {"written": [write_omg(out, sample, {r.video: (r.arousal, r.valence)
                                                        for r in table.itertuples()})], "failed": failed}
        path = out / "predictions.csv"
        table.to_csv(path, index=False, float_format="%.5f")
        return {"written": [path], "failed": failed + list(faceless.items())}
    if sample is not None:
        filled = {r["video"]: fill_nearest(res[i]["pred"], res[i]["valid"]) for i, r in enumerate(rows)}
        faceless = {v: "no face in any of its frames" for v, f in filled.items() if not np.isfinite(f).all()}
        missing_entries(sample, set(filled) - set(faceless), faceless)
        path, notes = write_submission(out, sample, filled)
        return {"written": [path], "failed": failed, "notes": notes}
    notes = {}
    for i, r in enumerate(rows):
        if fmt == "abaw":
            try:
                written.append(write_abaw(out, r, res[i]))
            except BadInputError as e:
                failed.append((r["video"], str(e)))
                continue
            if diff := label_frame_diff(r):   # said in predict.json: the file is not one line per decoded frame
                notes[r["video"]] = (f"{len(res[i]['pred']) + diff} lines, as its annotation file has; the video "
                                     f"decodes to {len(res[i]['pred'])} frames")
        else:
            written += write_prediction(out, r, res[i], caption)
    return {"written": written, "failed": failed, "notes": notes}


def label_frame_diff(row: dict) -> int:
    """Annotation lines minus decoded frames of an index row (0 for unlabelled videos and rows made before it)."""
    d = row.get("label_frame_diff")
    return int(d) if d is not None and np.isfinite(d) else 0


def write_abaw(out: Path, row: dict, res: dict) -> Path:
    """`<video>.txt` as ABAW reads it: `valence,arousal`, a line per frame, no gaps, values in [-1, 1].

    A labelled video whose annotation file has more or fewer lines than the video decodes to (accepted by
    `features --label-slack`, recorded as label_frame_diff) gets the annotation's count, so the file lines up with
    the ground truth it is scored against: the lines past the last frame repeat its prediction (the nearest in
    time, as for frames without a face; --label-slack likewise took the difference to be at the end)."""
    filled = fill_nearest(res["pred"], res["valid"])
    if not np.isfinite(filled).all():
        raise BadInputError(None, f"no face in any of its {len(filled)} frames: nothing to fill its ABAW file with",
                            "check the video (or its crops) and its `features` run")
    diff = label_frame_diff(row)
    if diff > 0:
        filled = np.concatenate([filled, np.repeat(filled[-1:], diff, axis=0)])
    elif diff < 0:
        filled = filled[:diff]
    path = out / f"{row['video']}.txt"
    lines = "".join(f"{v:.6f},{a:.6f}\n" for a, v in np.clip(filled.astype(np.float64), -1, 1))
    path.write_text("valence,arousal\n" + lines)
    return path


def write_prediction(out: Path, row: dict, res: dict, caption: str | None = None) -> list[Path]:
    """`<video>.csv` (frame, time, arousal, valence, valid) and `<video>.png`."""
    n = len(res["pred"])
    fps = float(row.get("fps") or 30.0)
    valid = res["valid"].astype(bool)
    pred = res["pred"].astype(np.float32)
    pred[~valid] = np.nan     # no face, no prediction: the row stays so frames keep their numbers
    df = pd.DataFrame({"frame": np.arange(n), "time": np.arange(n) / fps, "arousal": pred[:, 0],
                       "valence": pred[:, 1], "valid": valid})
    csv = out / f"{row['video']}.csv"
    df.to_csv(csv, index=False, float_format="%.5f")
    png = out / f"{row['video']}.png"
    _plot(png, df, row["video"], caption)
    return [csv, png]


def _plot(path: Path, df: pd.DataFrame, title: str, caption: str | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(df.time, df.arousal, label="arousal", lw=1)
    ax.plot(df.time, df.valence, label="valence", lw=1)
    ax.fill_between(df.time, -1, 1, where=~df.valid.to_numpy(), color="0.88", step="mid", label="no face")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("seconds")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right", ncol=3)
    fig.tight_layout()
    save_captioned(fig, path, caption, 110)
    plt.close(fig)
