"""Commands that read a cache or a trained model: info, export, inspect, predict."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.wording import counted


@click.command(short_help="Versions, device, datasets; with --cache, what a cache holds.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also show what this feature cache holds.")
def info(cache):
    """Versions, compute device, the known datasets with their roots, and (with --cache) the cache's status."""
    from pipeline.info import describe

    click.echo(describe(cache))


@click.command(short_help="Export a dataset's cache to one HDF5 file, for other loaders.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Feature cache made by `features`.")
@click.option("--dataset", required=True, help="Dataset name inside the cache, e.g. demo, affwild2, videos.")
@click.option("--format", "fmt", type=click.Choice(["h5"]), default="h5", show_default=True,
              help="h5: HDF5, one group per video with the cache's array names.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file, outside the cache; an existing one is replaced only if an earlier export wrote it.")
@click.option("--force", is_flag=True, help="Replace --out even if it is not an earlier export.")
def export(cache, dataset, fmt, out, force):
    """Export a dataset's cache to one HDF5 file (one group per video, same array names), for other loaders.

    Each video is checked in its group: one with a stale, damaged or missing array (or listed as done but without
    its group, or a done group without a row in the index) is left out, listed with the `features` command that
    repairs it, and the exit status is 1 (the file holds the usable videos), so a script that exports and then
    trains stops instead of using a silently smaller dataset. Videos whose extraction failed (never in the cache) are
    listed but do not change the exit status: `features` already reported them. An array made with other settings
    on some videos is refused (nothing is written), as train refuses it. The file's root attrs say what made it:
    the cache, version, time, each array's fingerprint, settings and video count, and the videos left out. A done
    video whose last `features` run reported an error (its file changed, the rebuild failed) is written from the
    arrays made before and said: on stderr, in the root attr not_updated and in its group's attr not_updated.
    """
    from pipeline import not_updated
    from pipeline.export import export_h5

    res = export_h5(cache, dataset, out, force=force)
    click.echo(f"wrote {counted(len(res.written), 'video')} to {res.path}")
    for name, n in sorted(res.partial.items()):
        click.echo(f"note: {name} is in {n} of the {len(res.written)} videos (the others lack it)", err=True)
    if res.not_updated:   # written, from the arrays made before its file changed (pipeline/not_updated.py)
        click.echo("note: " + not_updated.note(res.not_updated, "the file holds",
                                               "the file's attrs list {it} in not_updated"), err=True)
    for video, err in res.not_extracted:
        click.echo(f"not in the cache: {video} ({err})", err=True)
    for _video, why in res.left_out:   # why names the video
        click.echo(f"left out: {why}", err=True)
    if res.left_out:
        click.echo(f"{counted(len(res.left_out), 'video')} left out (unusable in the cache); the file holds the others", err=True)
        sys.exit(1)


@click.command("inspect", short_help="PNGs of one cached video: faces, ΔPhase maps, predictions.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Feature cache made by `features`.")
@click.option("--dataset", required=True, help="Dataset name inside the cache, e.g. demo, affwild2, videos.")
@click.option("--video", required=True, help="Video id (file name without extension).")
@click.option("--predictions", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="predictions.csv/.parquet of a train or predict run, to plot beside the labels.")
@click.option("--frames", default=None,
              help="Comma-separated frame numbers (>= 1) whose faces and ΔPhase maps to draw (default: 8 evenly spaced).")
@click.option("--truth", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="CSV of per-frame curves (header, one row per frame) drawn beside the motion energy with their "
                   "correlation, e.g. the <clip>.truth.csv that `bench/leakage.py --keep DIR` writes.")
@click.option("--input", "motion", default=None, metavar="DPHASE",
              help="Which ΔPhase to draw: dphase (default) or a variant, e.g. dphase@v1 (the files get its name).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for the PNGs.")
def inspect_cmd(cache, dataset, video, predictions, frames, truth, motion, out):
    """PNGs of one cached video: aligned faces with ΔPhase maps (symmetric colour scale at the 99th percentile of
    |ΔPhase|, with a colour bar), mean |ΔPhase| over time (beside --truth curves), labels (and predictions).

    The clips of bench/leakage.py (one nuisance at a time) can be drawn too:
    `python bench/leakage.py --faces 1 --keep clips/`, `python cli.py features clips/*.avi --cache c --weights random`,
    then `python cli.py inspect --cache c --dataset videos --video rotation_<face> --truth clips/rotation_<face>.truth.csv
    --out look/`.
    """
    from pipeline.inspect_video import inspect_video

    try:
        shown = [int(v) for v in frames.split(",") if v.strip()] if frames else None
    except ValueError:
        raise click.BadParameter(f"{frames!r}: give frame numbers separated by commas, e.g. 10,20,30",
                                 param_hint="--frames") from None
    for p in inspect_video(cache, dataset, video, out, predictions, frames=shown, truth=truth, motion=motion):
        click.echo(f"wrote {p}")


@click.command(short_help="Per-frame arousal and valence of videos or a cached split.")
@click.argument("videos", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Predict the videos of a feature cache instead of video files (with --dataset, and --split).")
@click.option("--dataset", default=None, help="With --cache: the dataset inside the cache, e.g. affwild2.")
@click.option("--split", default=None, help="With --cache: only this split, e.g. test or validation [default: all].")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), required=True, multiple=True,
              help="best.pt of a `train` run. Repeat it to average several models' predictions (e.g. the five fold "
                   "models of a cross-validation, as the paper's released code made its test predictions); "
                   "predict.json names each.")
@click.option("--format", "fmt", type=click.Choice(["csv", "abaw", "omg"]), default="csv", show_default=True,
              help="csv: <video>.csv (frame, time, arousal, valence, valid; empty where there is no face) and "
                   "<video>.png; a model of one label per video (OMG): OUT/predictions.csv. abaw: the ABAW "
                   "challenge's <video>.txt (header valence,arousal, a line per frame, every frame filled from the "
                   "nearest frame with a face, values clipped to [-1, 1]). omg: the OMG challenge's "
                   "OUT/omg_submission.csv (video,utterance,arousal,valence; needs --sample and --cache).")
@click.option("--sample", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The organisers' file whose rows the submission takes, in its order; refused if any of them has "
                   "no prediction. --format abaw: the sample submission of the 3rd ABAW onward (e.g. "
                   "CVPR_5th_ABAW_VA_test_set_sample.txt: image_location,valence,arousal, a row per frame), writes "
                   "the one file those challenges take, OUT/abaw_va_submission.txt. --format omg: the split's CSV "
                   "(e.g. omg_TestVideos_WithoutLabels.csv; their scoring script pairs rows by position).")
@click.option("--rescale", is_flag=True,
              help="Write the predictions rescaled as the paper's released code wrote its test predictions: each "
                   "model's, over the whole set predicted, to the std of its training labels around their own mean "
                   "(before the mean of several models). Raises CCC; predict.json records it. Without it the files "
                   "hold the plain predictions, and the scores of their rescaling are reported beside (README: the "
                   "released code's rescaling).")
@click.option("--weights", default=None,
              help="Video files only: FER+ ResNet50 file, or 'random'. Must be the weights the training cache used "
                   "(default: 'random' if the model was trained on random features, else $MIMAMO_WEIGHTS or "
                   "weights/resnet50_ferplus_dag.pth).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the per-video files (and, for video files, their feature cache in OUT/cache). They "
                   "are written to OUT/predict.unfinished/ and moved in once all are written: a predict killed part "
                   "way leaves OUT as the last finished call left it, and the next predict into OUT cleans up. One "
                   "predict at a time per OUT: a second one into it stops at once (OUT/predict.lock).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Feature-extraction workers (video files).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def predict(videos, cache, dataset, split, checkpoint, fmt, sample, rescale, weights, out, device, workers,
            no_progress):
    """Predict per-frame arousal and valence with a trained model, for VIDEOS... or for a cached dataset.

    \b
    python cli.py predict clip.mp4 --checkpoint runs/aw/best.pt --out preds/
    python cli.py predict --cache zarr --dataset affwild2 --split validation --checkpoint best.pt --format abaw --out sub/
    python cli.py predict --cache zarr --dataset affwild2 --split test --checkpoint best.pt --format abaw \\
        --sample CVPR_5th_ABAW_VA_test_set_sample.txt --out sub/
    python cli.py predict --cache zarr --dataset omg --split test --checkpoint best.pt --format omg \\
        --sample /data/OMG/omg_TestVideos_WithoutLabels.csv --out sub/
    python cli.py predict --cache zarr --dataset affwild --split test --checkpoint runs/f0/best.pt \\
        --checkpoint runs/f1/best.pt --checkpoint runs/f2/best.pt --out test/     # the mean of 3 models

    Video files go through the feature stages in-process with the settings recorded in the checkpoint. From a
    cache, the videos a `features` run extracted are used as they are. Either way, features made differently from
    the training cache (other weights, other motion settings) are refused, and each video is checked in its group.
    A model trained on one label per video (OMG) writes one prediction per video to OUT/predictions.csv.
    Where the cached videos are labelled, the predictions are scored as `train` scores its held-out videos, and
    the scores printed and written to predict.json (marked when a model was trained or selected on those videos).
    """
    from train.predict import predict_cache, predict_videos

    if cache is not None:
        if videos or not dataset:
            raise click.UsageError("--cache predicts a cached dataset: give --dataset NAME (and no video files)")
        if weights is not None:
            raise click.UsageError("--weights is for video files; a cache's features are already made")
        res = predict_cache(cache, dataset, checkpoint, out, split=split, fmt=fmt, device=device, sample=sample,
                            progress=not no_progress, rescaled=rescale, echo=click.echo)
    else:
        if not videos:
            raise click.UsageError("give video files, or --cache DIR --dataset NAME")
        if dataset or split:
            raise click.UsageError("--dataset and --split go with --cache")
        res = predict_videos(list(videos), checkpoint, out, fmt=fmt, weights=weights, device=device, workers=workers,
                             progress=not no_progress, sample=sample, rescaled=rescale, echo=click.echo)
    for p in res["written"]:
        click.echo(f"wrote {p}")
    for video, note in (res.get("notes") or {}).items():
        click.echo(f"note: {video}: {note}")
    sc = res.get("scores") or {}
    failed = {video for video, _ in res["failed"]}
    for video, why in (sc.get("left_out") or {}).items():   # also in predict.json's scores
        if video not in failed:   # a failed one (no face: no prediction) is said once, with its failure, below
            click.echo(f"left out of the scores {video}: {why}")
    if sc.get("videos"):
        where = f" of split {split}" if split else ""
        models = ("one model" if sc["models"] == 1 else f"mean of {sc['models']} models") + (
            ", rescaled (--rescale)" if rescale else "")
        click.echo(f"scores of the {len(sc['videos'])} labelled videos{where} ({models}): CCC arousal "
                   f"{sc['ccc_arousal']:.3f}, valence {sc['ccc_valence']:.3f}, mean {sc['ccc_mean']:.3f}"
                   + ("" if sc["held_out"] else f"; NOT held out: {len(sc['seen'])} of these videos were used to "
                      "train or select the models (predict.json names them)")
                   + (f"\n  rescaled as the released code did (train/rescale.py): CCC arousal "
                      f"{sc['rescaled']['ccc_arousal']:.3f}, valence {sc['rescaled']['ccc_valence']:.3f}, mean "
                      f"{sc['rescaled']['ccc_mean']:.3f}" if sc.get("rescaled") and not rescale else "")
                   + f"\n  scoring: {sc['scoring']} (predict.json: scores)")
    for video, err in res["failed"]:
        scored = " (left out of the scores)" if video in (sc.get("left_out") or {}) else ""
        click.echo(f"failed {video}: {err}{scored}", err=True)
    if res["failed"]:
        sys.exit(1)
