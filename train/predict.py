"""`cli.py predict`: a trained model on new videos, or on videos already in a feature cache; per-frame files.

From video files: features are computed with the settings recorded in the checkpoint (motion settings, face
tracker, seed) into a cache beside the outputs (`<out>/cache`, dataset `videos`), so a second predict on the same
videos is instant. From a cache (`--cache DIR --dataset NAME [--split S]`): the videos a `features` run extracted,
e.g. a test set extracted by the same command as the training set, so its features match by construction.

Either way the arrays' fingerprints must equal those the model was trained on: other backbone weights, other motion
settings or other code versions are refused with a message saying which array differs (and, from a cache, on which
videos). Each video's arrays are checked in its own group (``store.check_arrays``); a video that cannot be read is
reported as failed, with the command that repairs it. Checkpoints are read with ``torch.load(weights_only=True)``.

Several checkpoints are averaged (the fold models' test predictions, as the released code made them; how, and
when refused: train/ensemble.py). Where the videos read from a cache are labelled, the predictions are scored as
`train` scores its held-out videos, marked when a model was trained or selected on them.

Every run also writes `predict.json`: each checkpoint (path, sha256, the run that made it), the cache, dataset and
split read, the fingerprints of the arrays the models read, the format, the videos written or failed and the
scores, so the per-video files say what data and models made them. A reused `--out` holds only the last call's
files: an earlier call's that its predict.json lists and this call did not write are removed. A call writes into
`<out>/predict.unfinished/` and moves its files in only once all are written (train/predict_out.py), so a killed
call leaves the folder as the last finished call left it, and the next call into it cleans up. One call at a time
per folder: from its first write there to its end a call holds a lock on `<out>/predict.lock`, and a second call is
refused before it writes anything (train/predict_lock.py).

Formats: ``csv`` writes `<video>.csv` (frame, time, arousal, valence, valid; no prediction where there is no face)
and `<video>.png`. ``abaw`` writes the ABAW challenge's `<video>.txt`: header `valence,arousal`, one line per frame
of the video, every frame filled (a frame without a face takes the nearest prediction in time: ``fill_nearest``),
values clipped to [-1, 1]; a labelled video whose annotation file has more or fewer lines (--label-slack)
gets the annotation's count, an unlabelled (test) entry whose organiser crops are numbered past its frames as many
lines as its last crop says (write_abaw; predict.json notes both). With ``sample`` (the organisers' sample
submission of the 3rd ABAW onward) ``abaw`` writes instead the one file those challenges take, `abaw_va_submission.txt`: the sample's rows, in
its order, with our values (train/abaw_sample.py). A model trained on one label per video (OMG) predicts one line per
video into `predictions.csv` (video, arousal, valence, snippets), sampled one snippet per second as in training;
``omg`` writes instead the OMG challenge's `omg_submission.csv` (video, utterance, arousal, valence), the rows of
the organisers' CSV of the split in its order (train/omg_table.py).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import BadInputError
from pipeline import affwild_listing, extract, graph, label_files, not_updated, store, unindexed, unscored
from pipeline.manifest import videos_from_files
from train import data, ensemble, predict_lock, predict_out, predict_reuse
from train.abaw_sample import Sample, missing_entries, read_sample, write_submission
from train.config import used_arrays
from train.ensemble import Member, load_checkpoint  # noqa: F401 (load_checkpoint: the API tests and users call)
from train.evaluate import fill_nearest
from train.omg_table import OmgTable, read_table
from train.omg_table import write_submission as write_omg
from train.predict_files import abaw_frame_diff, cut_short, frames_counted, write_abaw, write_prediction
from train.videos import changed_listing, changed_since, check_fingerprints, usable

FORMATS = ("csv", "abaw", "omg")


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


def _same_settings(members: list[Member], s: extract.Settings, entries) -> None:
    """Refuse, before anything is extracted, settings whose arrays would not carry the fingerprints each model was
    trained on (the check after extraction would refuse them too, once the work was done and the cache's arrays
    replaced)."""
    from pipeline.settings import fingerprints

    if not entries:
        return
    would = fingerprints(s, entries[0])
    for m in members:
        bad = [f"{k}: trained on {m.ck['fingerprints'].get(k)}, these settings give {would[k]}"
               for k in used_arrays(m.cfg) if k in would and m.ck["fingerprints"].get(k) != would[k]]
        if bad:
            raise BadInputError(m.path, "the features of these settings would differ from those the model was "
                                f"trained on ({'; '.join(bad)}); nothing was extracted",
                                "pass the --weights file the training cache used (resnet50), or predict from that "
                                "cache with --cache DIR --dataset NAME")


def _one_extraction(members: list[Member]) -> dict:
    """The extraction settings for every model, as a checkpoint holds them (video files are extracted once, for all
    models): the stages and extras any model reads, and each setting, which must agree among the models it makes
    inputs for (motion settings: those that read motion; the weights: those that read ResNet50 features)."""
    merged: dict = {"stages": [], "extras": []}
    first: dict = {}   # setting -> (value, the model it came from)
    for m in members:
        fs = dict(m.ck.get("feature_settings") or {})
        reads = set(fs.get("stages") or ()) | ({"motion"} if fs.get("extras") else set())
        for k, v in fs.items():
            if k in ("stages", "extras"):
                merged[k] = list(dict.fromkeys([*merged[k], *(v or [])]))
            elif not ((k in ("motion", "motion_variant") and "motion" not in reads)
                      or (k == "weights" and "spatial" not in reads)):
                if k in first and first[k][0] != v:
                    raise BadInputError(m.path, f"its training features were extracted with another {k} than those "
                                        f"of {first[k][1]} ({v!r}, not {first[k][0]!r}); video files are extracted "
                                        "once, for every model", "extract the videos into a cache that holds what "
                                        "each model reads (`features` with each training cache's settings), then "
                                        "predict with --cache")
                first.setdefault(k, (v, m.path))
                merged[k] = v
    return {"feature_settings": merged}


def _check_format(fmt: str, level: str, path, sample=None) -> Sample | OmgTable | None:
    """Refuse a format the models cannot fill; the parsed organisers' file, if one is given: the ABAW sample
    (abaw) or the OMG CSV whose rows the submission takes (omg, where it is needed)."""
    if fmt not in FORMATS:
        raise BadInputError(None, f"--format {fmt!r} is not one of {', '.join(FORMATS)}", "pick one of them")
    if sample is not None and fmt == "csv":
        raise BadInputError(sample, "--sample is the organisers' file of a challenge's submission format",
                            "add --format abaw (ABAW's sample submission) or --format omg (OMG's CSV of the split)")
    if fmt == "abaw" and level == "video":
        raise BadInputError(path, "--format abaw writes one line per frame, but this model was trained on one label "
                            "per video (OMG)", "use --format omg (with the organisers' CSV) or csv")
    if fmt == "omg" and level != "video":
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


def _paths(checkpoints) -> list:
    """One checkpoint path, or several (averaged: train/ensemble.py)."""
    paths = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    if not paths:
        raise BadInputError(None, "no checkpoint given", "pass the best.pt of a `train` run with --checkpoint")
    return paths


def predict_videos(videos: list[str | Path], checkpoints, out: str | Path, *, fmt: str = "csv",
                   weights: str | None = None, device: str = "cpu", workers: int | None = None, progress: bool = True,
                   sample: str | Path | None = None, rescaled: bool = False, echo=print) -> dict:
    """Features, then the model (the mean of several: ``checkpoints`` a list), for each video; returns
    {"written": [paths], "failed": [(video, error)]}.
    ``sample``: the ABAW sample submission (fmt abaw), whose entries are the videos' file names without suffix."""
    members = ensemble.load(_paths(checkpoints))
    if fmt == "omg":   # its rows are <video>__<utterance> entries; files are named utterance_1.mp4 in every video
        raise BadInputError(None, "--format omg reads the utterances from a cache (their ids join video and "
                            "utterance)", "extract them with `features --dataset omg`, then predict with --cache "
                            "DIR --dataset omg --split SPLIT")
    for m in members:   # said before minutes of extraction, not after
        if other := sorted(trained_face_sources(m.ck) - {"video"}):
            raise BadInputError(m.path, f"this model was trained on faces from {' and '.join(other)} (not our "
                                "tracking of the video); video files get faces from our tracking and alignment, "
                                "whose features differ", f"extract them with the training cache's face source "
                                f"(`features --faces {other[0]}`; a challenge's test entries through the manifest's "
                                "test_list), then predict with --cache DIR --dataset NAME --split SPLIT")
    sample = _check_format(fmt, members[0].level, members[0].path, sample)
    if rescaled:
        ensemble.can_rescale(members)
    out = Path(out)
    cache = out / "cache"
    entries = videos_from_files(videos)
    s = feature_settings(_one_extraction(members), weights, device)
    _same_settings(members, s, entries)   # before minutes of extraction: a wrong --weights file, say
    # one call at a time into out, from its first write there (extraction into out/cache): train/predict_lock.py
    with predict_lock.held(out):
        summary = graph.run(entries, cache, "videos", s, workers=workers or min(len(entries), 2), progress=progress,
                            echo=echo)
        failed = [(r["video"], r["error"]) for r in summary.failed]
        names = ensemble.arrays(members)
        tried = [e.video for e in entries if e.video not in {v for v, _ in failed}]
        fps, bad = usable(cache, "videos", tried, [*names, "valid"], skip=True)
        failed += [(v, f"{why} (run {store.repair_hint(cache, 'videos', names)})") for v, why in bad.items()]
        for m in members:
            mine = used_arrays(m.cfg)
            for have in fps.values():
                check_fingerprints({k: m.ck["fingerprints"].get(k) for k in mine}, have, m.path)
        rows = [r for r in data.video_table(cache, "videos") if r["video"] in fps]
        rows, failed = _sample_rows(sample, rows, failed, dict(failed))
        caption = made_by(members, cache, "videos", rescaled)
        with predict_out.staged(out) as stage:   # out stays as the last finished call left it until all is written
            res = run_model(members, cache, "videos", rows, stage, fmt, device, sample, caption, progress, rescaled)
            result = {"written": res["written"], "failed": failed + res["failed"], "notes": res.get("notes") or {},
                      "rescaled": rescaled}
            made = predict_out.record(members, cache, "videos", None, fmt, names, result, sample)
            result["written"] = predict_out.publish(out, made, res["written"])
        return result


def predict_cache(cache: str | Path, dataset: str, checkpoints, out: str | Path, *,
                  split: str | None = None, fmt: str = "csv", device: str = "cpu", sample: str | Path | None = None,
                  progress: bool = False, rescaled: bool = False, echo=print, reuse: bool = False) -> dict:
    """The model (the mean of several: ``checkpoints`` a list) on a cached dataset's videos (one split, or all);
    returns {"written": [...], "failed": [...], "notes": {...}, "scores": scores of the labelled videos or None}.

    Every video is checked in its group; the arrays each model reads must carry its checkpoint's fingerprints on
    every video, else nothing is predicted and the error names the arrays and the videos. ``reuse``: return what
    ``out`` holds when it was made from exactly these models and data (train/predict_reuse.py; "reused": True).
    """
    members = ensemble.load(_paths(checkpoints))
    sample = _check_format(fmt, members[0].level, members[0].path, sample)
    if rescaled:
        ensemble.can_rescale(members)
    idx = whole = store.read_index(cache, dataset)   # whole: every split's rows, read once
    if idx is None:
        raise store.no_index(cache, dataset)
    elsewhere = {}   # why a sample's entry outside the split is not predicted
    if split is not None:
        elsewhere = {r["video"]: f"in split {r['split']!r} of the cache, not {split!r}"
                     for r in idx[idx.split != split].to_dict("records")}
        idx = idx[idx.split == split]
        if idx.empty:
            raise BadInputError(store.dataset_dir(cache, dataset), f"no video of split {split!r} in the cache",
                                f"splits there: {', '.join(sorted(map(str, whole.split.unique())))}")
    names = ensemble.arrays(members)
    records = idx.to_dict("records")   # the split's rows
    failed = [(r["video"], f"extraction failed: {r['error']}") for r in records if r.get("status") == "failed"]
    if split in (None, "test"):   # test-list entries the list no longer names: not predicted, but named
        failed += affwild_listing.dropped(cache, dataset, [r for r in records if r["video"] not in dict(failed)])
    hints: dict[str, str] = {}
    fps, bad = usable(cache, dataset, sorted(set(idx.video) - {v for v, _ in failed}), [*names, "valid", "labels"],
                      skip=True, hints=hints)
    failed += [(v, f"{why} ({hints[v]})") for v, why in bad.items()]
    # done groups the index has no row for: not predicted (the index is the record of what is done), but reported,
    # as an unusable video is, so that neither the files nor the scores lack them without a word
    orphans = unindexed.without_row(cache, dataset, whole)
    failed += [(v, f"{unindexed.problem(cache, dataset, v)} ({unindexed.hint(cache, dataset)})")
               for v in unindexed.in_splits(cache, dataset, orphans, None if split is None else [split])]
    if split in (None, "test"):   # test-list entries no `features` run extracted: not predicted, but named
        failed += affwild_listing.not_extracted(cache, dataset, set(whole.video))
    for m in members:
        _same_features(fps, m.ck["fingerprints"], used_arrays(m.cfg), cache, dataset, m.path)
    seen = ensemble.seen_by(members, cache, dataset, sorted(fps))
    if seen:
        echo(f"note: {len(seen)} of these videos were used to train or select {_which(members, seen)} "
             f"({_some(sorted(seen))}); their predictions are not held-out scores")
    split_rows = [r for r in data.video_table(cache, dataset) if r["video"] in fps]
    rows, failed = _sample_rows(sample, split_rows, failed, {**elsewhere, **dict(failed)})
    outside = unscored.outside_sample(split_rows, rows, sample and sample.path)   # labelled, not in the sample
    read = {r["video"]: fps[r["video"]] for r in rows}   # the fingerprints of what is predicted
    # done videos whose last `features` run reported an error (their file changed since, the rebuild failed): predicted
    # from the arrays made before, and said, here and in predict.json (pipeline/not_updated.py)
    stale = not_updated.errors(records, read)
    if stale:
        echo("note: " + not_updated.note(stale, "this run predicts from", "predict.json lists {it} in not_updated"))
    ident = predict_reuse.identity(members, cache, dataset, split, fmt, rescaled, sample, read, failed)
    out = Path(out)
    with predict_lock.held(out):   # one call at a time into out, from its first write there: train/predict_lock.py
        predict_out.recover(out)   # a call killed while moving its files in is finished first: they may be reused
        if reuse and (before := predict_reuse.done_before(out, ident)):
            return before
        caption = made_by(members, cache, dataset, rescaled)
        with predict_out.staged(out) as stage:   # out stays as the last finished call left it until all is written
            res = run_model(members, cache, dataset, rows, stage, fmt, device, sample, caption, progress, rescaled)
            changed = changed_since(cache, dataset, read)
            if changed:   # a `features` run updated them meanwhile: the files could mix data from before and after
                raise BadInputError(store.dataset_dir(cache, dataset), f"the cache changed while predicting "
                                    f"({changed_listing(changed)}); nothing was written to {out}",
                                    "let the `features` run finish, then predict again")
            scores = (ensemble.score(res["outputs"], rows, members, seen, {v: f.get("labels") for v, f in fps.items()})
                      if res.get("outputs") else None)
            if scores and (note := label_files.unchecked_note(cache, dataset)):
                echo(note)
            if scores and outside:
                scores["left_out"] = {**(scores.get("left_out") or {}), **outside}
            result = {"written": res["written"], "failed": failed + res["failed"], "notes": res.get("notes") or {},
                      "scores": scores, "rescaled": rescaled, "identity": ident, "not_updated": stale}
            made = predict_out.record(members, cache, dataset, split, fmt, names, result, sample)
            result["written"] = predict_out.publish(out, made, res["written"])
        return result


def _some(videos: list[str], limit: int = 4) -> str:
    return ", ".join(videos[:limit]) + (" ..." if len(videos) > limit else "")


def _which(members: list[Member], seen: dict[str, list[str]]) -> str:
    """'this model', or which of several did."""
    if len(members) == 1:
        return "this model"
    models = sorted({p for ps in seen.values() for p in ps})
    return f"{len(models)} of the {len(members)} models ({', '.join(models)})"


def _same_features(fps: dict[str, dict], trained: dict, names: list[str], cache, dataset: str, path) -> None:
    """Refuse when any video's arrays were made differently from the training cache's (naming arrays and videos)."""
    bad: dict[str, list[str]] = {}
    for video, have in sorted(fps.items()):
        for k in names:
            if have.get(k) != trained.get(k):
                bad.setdefault(f"{k}: trained on {trained.get(k)}, cache has {have.get(k)}", []).append(video)
    if bad:
        desc = "; ".join(f"{what} ({_some(vs)})" for what, vs in bad.items())
        raise BadInputError(path, f"features in {store.dataset_dir(cache, dataset)} were made differently from those "
                            f"the model was trained on ({desc})", "extract them with the `features` settings of the "
                            "training cache (same weights, motion settings, code), or train a model on this cache")


def made_by(members: list[Member], cache, dataset: str, rescaled: bool = False) -> str:
    """The caption of the per-video plots: the models (file, sha256, settings, the data each was trained on) and
    the data they read here; predict.json holds the whole of it."""
    lines = [] if len(members) == 1 else [f"mean of {len(members)} models:"]
    if rescaled:
        lines.insert(0, "predictions rescaled to the training labels' std (--rescale, as the released code):")
    for m in members:
        c = (m.ck.get("identity") or {}).get("config") or m.ck.get("config") or {}
        conf = m.ck.get("config") or {}
        lines.append(f"model {m.path} (sha256 {m.sha[:12]}; streams {conf.get('streams')}, input "
                     f"{conf.get('input')}, arch {conf.get('arch')}; trained on {c.get('dataset')} in "
                     f"{c.get('cache')})")
    return "\n".join(lines + [f"read: {dataset} in {cache}; see predict.json"])


def run_model(members: list[Member], cache, dataset: str, rows: list[dict], out: Path, fmt: str, device: str,
              sample: Sample | OmgTable | None = None, caption: str | None = None, progress: bool = False,
              rescaled: bool = False) -> dict:
    """The models over checked cached videos (their mean, for several; ``rescaled``: each model's predictions
    rescaled first, train/rescale.py); writes the files of ``fmt`` (with ``sample``: the one submission);
    {"written", "failed", "notes": {video: note}, "outputs": per-video arrays}."""
    written, failed = [], []
    if not rows:
        return {"written": written, "failed": failed}
    out.mkdir(parents=True, exist_ok=True)
    runs = ensemble.outputs(members, cache, dataset, rows, device, progress)
    if rescaled:
        runs = ensemble.rescaled(runs, members, members[0].level)
    res = ensemble.mean(runs)
    done = {"outputs": runs}
    if members[0].level == "video":
        table = pd.DataFrame([{"video": r["video"], "arousal": res[i]["video"][0], "valence": res[i]["video"][1],
                               "snippets": int(res[i]["vw"])} for i, r in enumerate(rows)])
        faceless = {v: "no face in any of its snippets: no prediction" for v in table.video[table.snippets == 0]}
        if sample is not None:
            missing_entries(sample, set(table.video) - set(faceless), faceless)
            return {**done, "written": [write_omg(out, sample, {r.video: (r.arousal, r.valence)
                                                                for r in table.itertuples()})], "failed": failed}
        path = out / "predictions.csv"
        table.to_csv(path, index=False, float_format="%.5f")
        return {**done, "written": [path], "failed": failed + list(faceless.items())}

    def counted(video: str) -> str:   # for the notes: where the frame count they compare with came from
        return frames_counted(store.open_video(cache, dataset, video).attrs)

    def cut(r: dict) -> str | None:   # a video decoded short of its header, whose frames nothing else counts
        return cut_short(cache, dataset, r, store.open_video(cache, dataset, r["video"]).attrs)

    if sample is not None:
        filled = {r["video"]: fill_nearest(res[i]["pred"], res[i]["valid"]) for i, r in enumerate(rows)}
        faceless = {v: "no face in any of its frames" for v, f in filled.items() if not np.isfinite(f).all()}
        last = {e: int(sample.frames[k].max()) for e, k in sample.rows_by_entry().items()}
        # rows past a cut video's last decoded frame would repeat one prediction (a sample within them says the
        # header was wrong: those are written)
        faceless.update({r["video"]: why for r in rows if last.get(r["video"], -1) >= int(r["n_frames"])
                         and (why := cut(r))})
        missing_entries(sample, set(filled) - set(faceless), faceless)
        path, notes = write_submission(out, sample, filled, counted)
        return {**done, "written": [path], "failed": failed, "notes": notes}
    notes = {}
    for i, r in enumerate(rows):
        if fmt == "abaw":
            if why := cut(r):
                failed.append((r["video"], why))
                continue
            try:
                written.append(write_abaw(out, r, res[i]))
            except BadInputError as e:
                failed.append((r["video"], str(e)))
                continue
            diff, why = abaw_frame_diff(r)
            if diff:   # said in predict.json and printed: the file is not one line per cached frame
                n = len(res[i]["pred"])
                notes[r["video"]] = (f"{n + diff} lines, {why}; {counted(r['video'])} {n} frames"
                                     + ("; the lines past its last frame repeat its last prediction" if diff > 0 else ""))
        else:
            written += write_prediction(out, r, res[i], caption)
    return {**done, "written": written, "failed": failed, "notes": notes}
