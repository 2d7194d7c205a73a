"""Commands that make data: the demo dataset (demo-data) and the feature cache (features)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from commands.common import split_csv, summary_line


@click.command("demo-data", short_help="Make the demo dataset: a real face, synthetic motions, labels.")
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


@click.command(short_help="Extract a dataset's features into the Zarr cache (resumable).")
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
              help="Recompute a motion variant the cache already holds under other settings (else an error): the one "
                   "--motion-variant names, or plain dphase without it. One run replaces one variant.")
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
                   "else video. Part of the face fingerprint: changing it rebuilds the faces, which only this flag does (a run "
                   "without it is refused where the dataset's done videos were made from another source).")
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
@click.option("--force", is_flag=True, help="Recompute every video, even those already done (a done one is rebuilt "
              "beside its group, which readers use until the rebuild is complete: a killed run loses nothing).")
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
        dataset=dataset, root=root, video_files=video_files, cache=cache, stages=split_csv(stages),
        extras=split_csv(extras), weights=weights, workers=workers, scheduler=scheduler,
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
