"""mimamo command line: thin. Each command parses, calls one function, prints."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from features.errors import BadInputError


class Group(click.Group):
    """Turns bad input anywhere below into a one-line error (file + what to do) and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BadInputError as e:
            raise click.UsageError(str(e)) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx):
    """MIMAMO Net: cache micro-motion (ΔPhase) and macro-motion (ResNet50) features of videos, then train on them.

    \b
    Typical use:
      python cli.py demo-data --out data/demo
      python cli.py features --dataset demo --cache zarr
      python cli.py train --cache zarr --dataset demo --out runs/demo
    """
    from pipeline.allocator import keep_freed_memory

    # batches come and go: reuse their memory instead of faulting pages in again. Training builds ~60 MB motion
    # windows every step, so it keeps blocks up to 256 MB (15% faster epochs; one process, so its RSS is all)
    training = ctx.invoked_subcommand in ("train", "ablate", "robustness")
    keep_freed_memory(*((256, 512) if training else ()))


@main.command("demo-data", short_help="Make the demo dataset: a real face, synthetic motions, labels.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("data/demo"), show_default=True,
              help="Folder for the demo dataset (Aff-Wild layout).")
@click.option("--videos", type=click.IntRange(2, 1000), default=8, show_default=True, help="Number of videos.")
@click.option("--seconds", type=click.FloatRange(1, 600), default=10.0, show_default=True, help="Length of each video.")
@click.option("--test-videos", type=click.IntRange(1, 999), default=None,
              help="How many of them are held out as test (default: a quarter).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; the same seed gives the same dataset.")
def demo_data(out, videos, seconds, test_videos, seed):
    """Generate the demo dataset: a real face photograph with head motion, lighting drift and micro-motions.

    Arousal follows the energy of small local facial motions (invisible in any single frame); valence follows a
    slowly varying mouth/brow shape. Both are written as per-frame label files in the Aff-Wild layout.
    """
    from pipeline.demo import make_demo

    if test_videos is not None and test_videos >= videos:   # checked here to name both flags and the CLI's range
        raise click.BadParameter(f"{test_videos} is not fewer than --videos {videos} (at least one video must "
                                 f"train): give --test-videos between 1 and {videos - 1}, or raise --videos",
                                 param_hint="'--test-videos'")
    summary = make_demo(out, videos=videos, seconds=seconds, seed=seed, test_videos=test_videos)
    click.echo(summary_line(summary))


def summary_line(summary: dict) -> str:
    """One readable line from a dict of figures."""
    return ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (list, dict)))


@main.command(short_help="Versions, device, datasets; with --cache, what a cache holds.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also show what this feature cache holds.")
def info(cache):
    """Versions, compute device, the known datasets with their roots, and (with --cache) the cache's status."""
    from pipeline.info import describe

    click.echo(describe(cache))


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@main.command(short_help="Extract a dataset's features into the Zarr cache (resumable).")
@click.argument("videos", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", help="A dataset of data_manifest.yaml (demo, affwild, affwild2, omg).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), help="Override the dataset's root.")
@click.option("--videos", "video_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A video file instead of a dataset (repeatable; or give the files as arguments); cached as "
                   "dataset 'videos', unlabelled.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), required=True, help="Cache folder (Zarr).")
@click.option("--stages", default="align,motion,spatial", show_default=True,
              help="Stages to run: align (faces, always), motion (ΔPhase), spatial (ResNet50).")
@click.option("--extras", default="",
              help="Add (comma-separated): phase, flow (ablation inputs); flip (the arrays of the mirrored faces, "
                   "resnet50@flip and the motion arrays of the variant this run writes, e.g. dphase@flip, computed "
                   "from mirrored faces: for train --augment flip).")
@click.option("--weights", default=None,
              help="FER+ ResNet50 file, or 'random' (seeded; demo/tests). Default: $MIMAMO_WEIGHTS, "
                   "else weights/resnet50_ferplus_dag.pth.")
@click.option("--workers", type=click.IntRange(1, 1024), default=None, help="Local worker processes [default: cores].")
@click.option("--scheduler", default="local", show_default=True,
              help="local (a Dask LocalCluster), tcp://host:port (an existing cluster) or slurm|pbs|sge|lsf.")
@click.option("--jobs", type=click.IntRange(1, 10000), default=None, help="Batch jobs to start [manifest: cluster.jobs].")
@click.option("--cores", type=int, default=None, help="Cores per batch job [manifest].")
@click.option("--memory", default=None, help="Memory per batch job, e.g. 32GB [manifest].")
@click.option("--walltime", default=None, help="Walltime per batch job, e.g. 04:00:00 [manifest].")
@click.option("--queue", default=None, help="Batch queue/partition.")
@click.option("--gpus", type=int, default=None, help="GPUs per batch job (workers get a GPU resource) [manifest].")
@click.option("--lifetime", default=None,
              help="A batch worker retires by this time after it starts (e.g. 03:45:00, 50m), its video going back "
                   "to the queue, and a new job replaces it [default: from --walltime: at 85-95% of it, staggered].")
@click.option("--worker-timeout", default=None,
              help="Stop the run (saying why, index written) after this long with no worker connected, e.g. 30m, "
                   "01:00:00 [default: 30m; on SLURM also once every job ended and none replaced it].")
@click.option("--retries", type=click.IntRange(0, 100), default=None,
              help="Times a video starts again after its worker was lost (walltime, scancel, out of memory) "
                   "before it is recorded failed [default: 2].")
@click.option("--dashboard", default=None, metavar="HOST:PORT",
              help="Where the Dask dashboard listens [default: 127.0.0.1 on a free port: this machine only]. "
                   "0.0.0.0:8787 opens it to the network; see the README for an SSH tunnel instead.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda, for the pyramid and ResNet50.")
@click.option("--keep-faces", is_flag=True, help="Also store the 224x224 RGB crops (150 KB/frame).")
@click.option("--gamma-jitter", type=click.FloatRange(0, 0.99), default=0.0, show_default=True,
              help="Corrupt each frame's illumination, u^g with g ~ U[1-B, 1+B] (paper Fig. 5); each frame's g "
                   "comes from (--seed, the video id, the frame number).")
@click.option("--motion-variant", default=None, metavar="NAME",
              help="Write the motion arrays as the named variant dphase@NAME (phase@NAME with --extras phase), "
                   "beside the others. Built in: paper (the paper's ΔPhase), v1 (the defaults before issue 17). "
                   "Any other name is defined by the --motion-* flags given with it (or, without flags, by the "
                   "settings the cache recorded for it). Without it, the default variant (plain dphase, default "
                   "settings) is written.")
@click.option("--replace-variant", is_flag=True,
              help="Recompute a --motion-variant the cache already holds under other settings (else an error).")
@click.option("--motion-v1", is_flag=True,
              help="Start from the ΔPhase settings before issue 17 (the paper's mean subtraction, no face window, "
                   "blur sigma 2 over 11 taps weighted by sqrt(A_t A_t-1)); the other --motion-* flags apply on "
                   "top. Needs --motion-variant (alone: --motion-variant v1).")
@click.option("--motion-rigid", type=click.Choice(["affine", "mean", "none"]), default=None,
              help="How the head's motion leaves ΔPhase: affine (default; a robust affine motion fitted per frame "
                   "pair and subtracted), mean (the paper's mean subtraction; the paper variant's default), none. "
                   "Needs --motion-variant.")
@click.option("--motion-mean-window", type=int, default=None,
              help="The mean subtraction over an odd k x k box instead of the whole map (implies --motion-rigid "
                   "mean). Needs --motion-variant.")
@click.option("--motion-window/--no-motion-window", default=None,
              help="Keep ΔPhase inside a soft ellipse over the face (default: on; the paper variant: off, and on is "
                   "refused there); off: the whole 48x48 crop. Needs --motion-variant.")
@click.option("--motion-sigma", type=click.FloatRange(min=0.1), default=None,
              help="Amplitude-weighted blur sigma, pixels, over 2 int(2.5 sigma) + 1 taps (default 3; the paper "
                   "variant: 2, 11 taps). Needs --motion-variant.")
@click.option("--detect-every", type=click.IntRange(1, 10000), default=None, help="Re-detect faces every K frames.")
@click.option("--faces", type=click.Choice(["video", "cropped_aligned", "openface"]), default=None,
              help="Where faces come from: video (decode, dlib track, align), cropped_aligned (Aff-Wild2's organiser "
                   "crops <crops>/<video>/00001.jpg: no decoding, no detection), openface (landmarks from OpenFace 2 "
                   "CSVs <dir>/<video>.csv, then our alignment). Default: the dataset's 'faces' in the manifest, "
                   "else video. Part of the face fingerprint: changing it rebuilds the faces.")
@click.option("--crops-dir", type=click.Path(file_okay=False, path_type=Path), multiple=True,
              help="With --faces cropped_aligned: the folder holding one crop folder per video "
                   "(<video>/, <video>_left/, <video>_right/); repeat it for crops shipped in several folders (ABAW5 "
                   "on: cropped_aligned and cropped_aligned_new_50_vids), looked in in order. Default: the "
                   "dataset's 'crops' in the manifest (a folder or a list).")
@click.option("--openface-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --faces openface: the folder of OpenFace 2 FeatureExtraction CSVs, <video>.csv (two-person "
                   "videos: <video>_left.csv/_right.csv, or one multi-face <video>.csv). Default: the manifest's "
                   "'openface_dir'.")
@click.option("--label-slack", type=click.IntRange(0, 1000), default=0, show_default=True, metavar="N",
              help="Accept label files (and crop folders, OpenFace CSVs) that differ from the video's frame count by "
                   "at most N frames: labels are cut, or padded with NaN (unlabelled), at the end. The difference is "
                   "recorded per video (index columns label_frame_diff, faces_frame_diff). Default: strict.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random weights and gamma jitter.")
@click.option("--chunk-frames", type=click.IntRange(32, 1 << 20), default=256, show_default=True, metavar="N",
              help="Frames per block of work (a multiple of 32). A video's progress is saved after each block, so a "
                   "lost worker (walltime, scancel, a kill) costs at most one block: the video resumes there, and "
                   "writes exactly what an uninterrupted run would. On a batch system one block must fit in one "
                   "job's walltime. Changes no output (not in the fingerprints).")
@click.option("--force", is_flag=True, help="Recompute every video, even those already done.")
@click.option("--prune", is_flag=True,
              help="Delete the cached videos the dataset no longer lists. Without it they are kept but marked: no "
                   "reader uses them (train refuses them; --skip-unusable leaves them out), and a video back in the "
                   "dataset is unmarked by the next run with nothing recomputed.")
@click.option("--wait-for-lock", type=click.FloatRange(0, 7 * 86400), default=0.0, show_default=True,
              metavar="SECONDS",
              help="One features run at a time per cache and dataset: wait up to this long for a running one "
                   "(default: stop at once, naming it). A lock left by a killed run is taken over.")
@click.option("--dry-run", is_flag=True, help="Print the plan (and the job script for a batch system); run nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def features(videos, dataset, root, video_files, cache, stages, extras, weights, workers, scheduler, jobs, cores,
             memory, walltime, queue, gpus, lifetime, worker_timeout, retries, dashboard, device, keep_faces,
             gamma_jitter, motion_variant, replace_variant, motion_v1, motion_rigid, motion_mean_window, motion_window,
             motion_sigma, detect_every, faces,
             crops_dir, openface_dir, label_slack, seed, chunk_frames, force, prune,
             wait_for_lock, dry_run, no_progress):
    """Extract features of a dataset's videos (or of VIDEOS...) into the Zarr cache (resumable; bad videos do not
    stop the others).

    A rerun skips videos already done, resumes interrupted ones from their last complete block (--chunk-frames;
    started over if made under other settings), and recomputes only the arrays whose settings changed (motion
    arrays are computed from the cached 48x48 faces, without opening any video). A failed or killed update
    leaves the arrays that were there usable: new arrays are built beside them and swapped in.
    Exits with status 1 when any video failed, or when the run stopped because no worker came back; the summary
    and index.parquet say why.
    """
    from pipeline.features_cmd import features_command

    video_files = [*videos, *video_files]
    if bool(dataset) == bool(video_files):
        raise click.UsageError("give either --dataset NAME or video files (as arguments or --videos FILE)")
    summary = features_command(
        dataset=dataset, root=root, video_files=video_files, cache=cache, stages=_csv(stages),
        extras=_csv(extras), weights=weights, workers=workers, scheduler=scheduler,
        cluster={"jobs": jobs, "cores": cores, "memory": memory, "walltime": walltime, "queue": queue, "gpus": gpus,
                 "lifetime": lifetime, "worker_timeout": worker_timeout, "retries": retries, "dashboard": dashboard},
        device=device, keep_faces=keep_faces, gamma_jitter=gamma_jitter,
        motion=_motion_settings(motion_v1, motion_rigid, motion_mean_window, motion_window, motion_sigma),
        face={"detect_every": detect_every} if detect_every else {}, seed=seed, force=force, dry_run=dry_run,
        progress=not no_progress, echo=click.echo, motion_variant=motion_variant, replace_variant=replace_variant,
        wait_for_lock=wait_for_lock, faces=faces, crops_dir=crops_dir, openface_dir=openface_dir,
        label_slack=label_slack, chunk_frames=chunk_frames, prune=prune)
    if not dry_run:
        click.echo(summary.table())
        if summary.stopped:
            click.echo(f"stopped: {summary.stopped}", err=True)
        if summary.failed or summary.stopped:
            sys.exit(1)


@main.command(short_help="Export a dataset's cache to one HDF5 file, for other loaders.")
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
    the cache, version, time, each array's fingerprint, settings and video count, and the videos left out.
    """
    from pipeline.export import export_h5

    res = export_h5(cache, dataset, out, force=force)
    click.echo(f"wrote {len(res.written)} videos to {res.path}")
    for name, n in sorted(res.partial.items()):
        click.echo(f"note: {name} is in {n} of the {len(res.written)} videos (the others lack it)", err=True)
    for video, err in res.not_extracted:
        click.echo(f"not in the cache: {video} ({err})", err=True)
    for _video, why in res.left_out:   # why names the video
        click.echo(f"left out: {why}", err=True)
    if res.left_out:
        click.echo(f"{len(res.left_out)} videos left out (unusable in the cache); the file holds the others", err=True)
        sys.exit(1)


def _motion_settings(v1: bool, rigid, mean_window, window, sigma) -> dict:
    """MotionConfig overrides from the features flags (MotionConfig fills in the rest: taps from sigma, rigid='mean'
    from a mean window)."""
    from features.motion import MOTION_V1
    from features.window import FACE_ELLIPSE

    if mean_window is not None and rigid not in (None, "mean"):
        raise click.UsageError(f"--motion-mean-window is a box of --motion-rigid mean, not of {rigid}")
    out = dict(MOTION_V1) if v1 else {}
    if sigma is not None:
        out.pop("taps", None)  # the blur's support follows sigma: 2 int(2.5 sigma) + 1
    out.update({k: v for k, v in {"rigid": rigid, "mean_window": mean_window, "sigma": sigma}.items() if v is not None})
    if window is not None:
        out["window"] = list(FACE_ELLIPSE) if window else None
    return out


@main.command("inspect", short_help="PNGs of one cached video: faces, ΔPhase maps, predictions.")
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

# ---------------------------------------------------------------- train / ablate (train/)


def _train_options(f):
    """The training flags shared by `train` and `ablate` (defaults: the paper's Aff-Wild settings)."""
    opts = [
        click.option("--cache", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Feature cache made by `features` (the trainer reads only this, never a video)."),
        click.option("--dataset", required=True, help="Dataset name inside the cache, e.g. demo, affwild, omg."),
        click.option("--streams", type=click.Choice(["both", "spatial", "temporal"]), default="both",
                     show_default=True, help="Two-stream MIMAMO Net, or one stream only (no GRU, as in the paper)."),
        click.option("--input", "input_", default="dphase", show_default=True, callback=_check_input,
                     help="Temporal-stream input: dphase, phase or flow, or a variant such as dphase@paper "
                          "(phase/flow need `features --extras phase,flow`; a variant `features --motion-variant`)."),
        click.option("--window", type=click.IntRange(4, 16), default=12, show_default=True,
                     help="Motion rows per frame, centred on it (12 = frames t-6..t+6)."),
        click.option("--arch", type=click.Choice(["paper", "released"]), default="paper", show_default=True,
                     help="Temporal CNN: the paper's 4 blocks / 8 convs, or the released code's 3 blocks / 6 convs."),
        click.option("--width", type=click.IntRange(2, 512), default=64, show_default=True,
                     help="Channels of the first conv block (doubling after); the released code uses 64."),
        click.option("--folds", type=click.IntRange(2, 100), default=5, show_default=True,
                     help="Folds by recording (seeded). With a held-out split (a labelled test split, or Aff-Wild2's "
                          "validation split), folds pick the validation videos used for early stopping; else fold "
                          "--fold is held out and the next fold validates."),
        click.option("--pool-validation/--hold-out-validation", default=None,
                     help="Put a labelled validation split into the folds (then a fold is held out and reported), or "
                          "hold it out like a test split (never trained or selected on; the scores are on it). "
                          "Default: held out for per-frame labels (ABAW: train on Train_Set, report Validation_Set), "
                          "pooled for one label per video (the paper's OMG protocol: 5-fold cross-validation over "
                          "Train and Validation merged)."),
        click.option("--splits", default=None,
                     help="Read only the videos of these splits, e.g. train,validation: the paper's OMG tables 3-4 "
                          "(5-fold cross-validation over Train+Validation) from a cache that also holds the labelled "
                          "test set (its Table 1). Default: all the cache's labelled videos."),
        click.option("--epochs", type=click.IntRange(1, 10000), default=25, show_default=True, help="Epochs."),
        click.option("--lr", type=float, default=1e-3, show_default=True,
                     help="SGD learning rate (x0.1 at --milestones). Small caches need more (the demo uses 0.05)."),
        click.option("--finetune-lr", type=float, default=None,
                     help="Learning rate of a two-stream model initialised from single-stream models "
                          "(default: --lr). A lower one keeps what the streams learnt."),
        click.option("--milestones", default="10,20", show_default=True, help="Epochs where the lr drops x0.1."),
        click.option("--batch-size", type=click.IntRange(1, 4096), default=16, show_default=True,
                     help="Sequences of 64 frames per step."),
        click.option("--patience", type=click.IntRange(1, 1000), default=5, show_default=True,
                     help="Early stopping: epochs without a better validation mean CCC."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of folds, init and shuffling."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N."),
        click.option("--num-workers", type=click.IntRange(0, 64), default=2, show_default=True,
                     help="Data-loader worker processes."),
        click.option("--threads", type=click.IntRange(1, 256), default=None,
                     help="Torch CPU threads (1 is fastest on a busy shared machine). The count changes the "
                          "numbers (torch splits its CPU sums by thread): metrics.json records it per stretch of "
                          "epochs (threads_used)."),
        click.option("--augment", type=click.Choice(["none", "flip"]), default="none", show_default=True,
                     help="flip: a seeded half of each epoch's training sequences read the mirrored faces' arrays "
                          "(needs `features --extras flip`); part of the run's identity."),
        click.option("--skip-unusable", is_flag=True,
                     help="Leave out videos whose cached arrays cannot be read (not done, stale, missing) and list "
                          "them in metrics.json, instead of stopping with the command that repairs them."),
        click.option("--no-plots", is_flag=True, help="Skip the PNG plots."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _check_input(ctx, param, value):
    from pipeline.arrays import parse_input

    try:
        parse_input(value)
    except BadInputError as e:
        raise click.BadParameter(str(e)) from None
    return value


def _int_list(value: str | None, flag: str) -> list[int] | None:
    """Comma-separated integers of a flag (None when not given); anything else is a usage error naming the flag."""
    if not value:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give integers separated by commas, e.g. 0,1", param_hint=flag) from None


def _train_config(**kw):
    from train.trainer import TrainConfig

    kw["input"] = kw.pop("input_")
    kw["plots"] = not kw.pop("no_plots")
    kw["milestones"] = tuple(_int_list(str(kw["milestones"]), "--milestones") or ())
    kw["cache"] = str(kw["cache"])
    return TrainConfig(**kw)


@main.command(short_help="Train MIMAMO Net from a cache and score it (metrics.json).")
@_train_options
@click.option("--fold", type=int, default=0, show_default=True, help="Which fold is held out (0..folds-1).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: best.pt, last.pt, metrics.json, log.csv/.jsonl, predictions.parquet/.csv, PNGs.")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/last.pt after a kill (same final numbers under the same --threads and "
                   "--device); its configuration and the cache's "
                   "fingerprints must be this run's, else the differing keys are listed. A finished run without "
                   "last.pt is returned as it is (the same check applies to its metrics.json).")
@click.option("--init-spatial", type=click.Path(dir_okay=False, exists=True), default=None,
              help="--streams both: initialise the spatial stream from this single-stream checkpoint.")
@click.option("--init-temporal", type=click.Path(dir_okay=False, exists=True), default=None,
              help="--streams both: initialise the temporal stream from this single-stream checkpoint.")
@click.option("--no-pretrain", is_flag=True,
              help="--streams both without --init-*: train from scratch instead of single streams first.")
def train(out, no_pretrain, **kw):
    """Train MIMAMO Net on a feature cache; writes checkpoints, metrics, per-frame predictions and plots.

    With --streams both and no --init-* checkpoints, the spatial and temporal single-stream models are trained
    first on this run's own training videos (into OUT/spatial, OUT/temporal) and initialise the two-stream model,
    as in the paper. They are reused only when made with the same fold, seed, settings and cache fingerprints;
    otherwise they are trained again. --resume refuses a last.pt made under another configuration or data.
    """
    from train.trainer import train as run

    m = run(_train_config(out=str(out), pretrain=not no_pretrain, **kw))
    if m.get("interrupted"):
        click.echo(f"stopped after epoch {m.get('epoch')}; rerun with --resume")
        return
    click.echo(summary_line({k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()
                             if k.startswith(("split", "ccc", "pcc", "rmse", "best_epoch"))}) + f" -> {out}")
    if r := m.get("rescaled"):   # how the paper's released code scored (train/rescale.py); metrics.json: rescaled
        click.echo(f"  rescaled as the released code did: ccc_arousal={r['ccc_arousal']:.4f}, "
                   f"ccc_valence={r['ccc_valence']:.4f}, ccc_mean={r['ccc_mean']:.4f}")


@main.command(short_help="A grid of trainings from one cache: mean CCC per setting.")
@_train_options
@click.option("--grid", multiple=True, required=True,
              help='NAME=V1,V2,... over a train option; repeat for a product, e.g. --grid "window=4,8,12,16" '
                   '--grid "streams=spatial,temporal,both" or --grid "input=dphase,phase,flow".')
@click.option("--fold-ids", default=None, help="Run only these folds (comma list), e.g. 0 for a quick look.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder: one subfolder per cell and fold, ablation.csv and ablation.md.")
def ablate(grid, fold_ids, out, **kw):
    """Run a grid of trainings from one cache and tabulate mean CCC across folds (the paper's Tables 3-5).

    A finished cell is reused only when its configuration, init checkpoints, cache fingerprints and videos are
    the same as now; any other is rerun (and says why), so an interrupted ablation picks up where it stopped.
    The tables say which architecture and input made each row and count only folds with a finite score.
    Beside the plain scores: the released code's rescaling (README), and, with a held-out split (Aff-Wild's test,
    ABAW's validation) and two or more folds, the score of the mean of the fold models' predictions on it, as the
    paper's released code made its test predictions.
    """
    from train.ablate import ablate as run

    cfg = _train_config(out=str(out), **kw)
    ids = _int_list(fold_ids, "--fold-ids")
    table = run(cfg.cache, cfg.dataset, list(grid), out, cfg, folds=cfg.folds, fold_ids=ids)
    protocols = set(table["protocol"]) if "protocol" in table else set()
    if len(protocols) == 1:   # said once above the table, not on every row
        click.echo(protocols.pop())
        table = table.drop(columns="protocol")
    click.echo(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    click.echo(f"tables: {out / 'ablation.md'}, {out / 'ablation.csv'}")


@main.command(short_help="Temporal-model CCC against illumination change (paper Fig. 5).")
@_train_options
@click.option("--betas", default="0,0.2,0.4,0.6,0.8", show_default=True,
              help="Illumination variability: per-frame gamma g ~ U[1-beta, 1+beta], each beta in [0, 1).")
@click.option("--inputs", default="dphase,flow", show_default=True,
              help="Temporal-stream inputs to compare (dphase, phase, flow, or a variant such as dphase@paper); "
                   "each is made from the cached faces where missing, beta 0's clean input too.")
@click.option("--gamma-seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the gamma draws (with the video id and frame); part of the corrupted arrays' names "
                   "(gamma0.2s3) and fingerprints.")
@click.option("--fold-ids", default=None, help="Run only these folds (comma list), e.g. 0 for a quick look.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder: a subfolder per input, beta and fold; robustness.csv/.md/.png/.json.")
@click.option("--no-progress", is_flag=True, help="No progress bar while the corrupted inputs are computed.")
@click.pass_context
def robustness(ctx, betas, inputs, gamma_seed, fold_ids, out, no_progress, **kw):
    """Paper Fig. 5: CCC of the temporal single-stream model against illumination variability, per input.

    For each beta and input, the inputs are recomputed from the cached 48x48 faces under a per-frame gamma u^g,
    g ~ U[1-beta, 1+beta], drawn from (--gamma-seed, the video id, the frame) (alignment saw the clean frames; no
    video is opened), stored in the cache as variants (dphase@gamma0.2, flow@gamma0.2) under their own
    fingerprints, and a temporal model is trained and scored on them with the train flags given (as `train`).
    A rerun reuses the cached inputs and every finished training of the same identity.

    How this differs from `features --gamma-jitter B` (which corrupts the decoded frames before alignment):
    there the face detector and landmarks see the corrupted frames, so the crops themselves move and jitter,
    and the score mixes the tracker's robustness with the motion input's. Here alignment saw the clean
    frames: the same 48x48 faces, pixel for pixel, are corrupted after alignment, so the only thing that
    changes between beta values is the brightness of the faces the motion representation sees. That isolates
    the claim under test (phase differences are insensitive to illumination changes, optical flow is not),
    and costs no decoding or alignment: each beta is computed from the cache alone.
    """
    from click.core import ParameterSource

    from train.robustness import parse_betas
    from train.robustness import robustness as run

    for name, flag in (("streams", "--streams"), ("input_", "--input")):
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
            raise click.UsageError(f"robustness trains the temporal stream on each of --inputs: drop {flag}")
    kw["streams"] = "temporal"
    cfg = _train_config(out=str(out), **kw)
    ids = _int_list(fold_ids, "--fold-ids")
    table = run(cfg.cache, cfg.dataset, parse_betas(betas), list(_csv(inputs)), out, cfg, fold_ids=ids,
                gamma_seed=gamma_seed, progress=not no_progress, echo=click.echo)
    cols = ["input", "beta", "reads", "ccc_arousal", "ccc_valence", "ccc_mean", "ccc_mean_change", "folds"]
    click.echo(table[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    click.echo(f"tables: {out / 'robustness.md'}, {out / 'robustness.csv'}; figure: {out / 'robustness.png'}")


@main.command(short_help="Per-frame arousal and valence of videos or a cached split.")
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
              help="Folder for the per-video files (and, for video files, their feature cache in OUT/cache).")
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
    if sc := res.get("scores"):
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
        click.echo(f"failed {video}: {err}", err=True)
    if res["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
