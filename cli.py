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
def main():
    """MIMAMO Net: cache micro-motion (ΔPhase) and macro-motion (ResNet50) features of videos, then train on them.

    \b
    Typical use:
      python cli.py demo-data --out data/demo
      python cli.py features --dataset demo --cache zarr
      python cli.py train --cache zarr --dataset demo --out runs/demo
    """


@main.command("demo-data")
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

    summary = make_demo(out, videos=videos, seconds=seconds, seed=seed, test_videos=test_videos)
    click.echo(summary_line(summary))


def summary_line(summary: dict) -> str:
    """One readable line from a dict of figures."""
    return ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (list, dict)))


@main.command()
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also show what this feature cache holds.")
def info(cache):
    """Versions, compute device, the known datasets with their roots, and (with --cache) the cache's status."""
    from pipeline.info import describe

    click.echo(describe(cache))


# ---------------------------------------------------------------- train / ablate (train/)


def _train_options(f):
    """The training flags shared by `train` and `ablate` (defaults: the paper's Aff-Wild settings)."""
    opts = [
        click.option("--cache", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Feature cache made by `features` (the trainer reads only this, never a video)."),
        click.option("--dataset", required=True, help="Dataset name inside the cache, e.g. demo, affwild, omg."),
        click.option("--streams", type=click.Choice(["both", "spatial", "temporal"]), default="both",
                     show_default=True, help="Two-stream MIMAMO Net, or one stream only (no GRU, as in the paper)."),
        click.option("--input", "input_", type=click.Choice(["dphase", "phase", "flow"]), default="dphase",
                     show_default=True, help="Temporal-stream input (phase/flow need `features --extras phase,flow`)."),
        click.option("--window", type=click.IntRange(4, 16), default=12, show_default=True,
                     help="Motion rows per frame, centred on it (12 = frames t-6..t+6)."),
        click.option("--arch", type=click.Choice(["paper", "released"]), default="paper", show_default=True,
                     help="Temporal CNN: the paper's 4 blocks / 8 convs, or the released code's 3 blocks / 6 convs."),
        click.option("--width", type=click.IntRange(2, 512), default=64, show_default=True,
                     help="Channels of the first conv block (doubling after); the released code uses 64."),
        click.option("--folds", type=click.IntRange(2, 100), default=5, show_default=True,
                     help="Folds by video (seeded). With a labelled test split, folds pick the validation videos."),
        click.option("--epochs", type=click.IntRange(1, 10000), default=25, show_default=True, help="Epochs."),
        click.option("--lr", type=float, default=1e-3, show_default=True,
                     help="SGD learning rate (x0.1 at --milestones). Small caches need more (the demo uses 0.05)."),
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
                     help="Torch CPU threads (1 is fastest on a busy shared machine)."),
        click.option("--no-plots", is_flag=True, help="Skip the PNG plots."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _train_config(**kw):
    from train.trainer import TrainConfig

    kw["input"] = kw.pop("input_")
    kw["plots"] = not kw.pop("no_plots")
    kw["milestones"] = tuple(int(m) for m in str(kw["milestones"]).split(",") if m.strip())
    kw["cache"] = str(kw["cache"])
    return TrainConfig(**kw)


@main.command()
@_train_options
@click.option("--fold", type=int, default=0, show_default=True, help="Which fold is held out (0..folds-1).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: best.pt, last.pt, metrics.json, log.csv/.jsonl, predictions.parquet/.csv, PNGs.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt after a kill (same final numbers).")
@click.option("--init-spatial", type=click.Path(dir_okay=False, exists=True), default=None,
              help="--streams both: initialise the spatial stream from this single-stream checkpoint.")
@click.option("--init-temporal", type=click.Path(dir_okay=False, exists=True), default=None,
              help="--streams both: initialise the temporal stream from this single-stream checkpoint.")
@click.option("--no-pretrain", is_flag=True,
              help="--streams both without --init-*: train from scratch instead of single streams first.")
def train(out, no_pretrain, **kw):
    """Train MIMAMO Net on a feature cache; writes checkpoints, metrics, per-frame predictions and plots.

    With --streams both and no --init-* checkpoints, the spatial and temporal single-stream models are trained
    first (into OUT/spatial, OUT/temporal; reused when done) and initialise the two-stream model, as in the paper.
    """
    from train.trainer import train as run

    m = run(_train_config(out=str(out), pretrain=not no_pretrain, **kw))
    if m.get("interrupted"):
        click.echo(f"stopped after epoch {m.get('epoch')}; rerun with --resume")
        return
    click.echo(summary_line({k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()
                             if k.startswith(("split", "ccc", "pcc", "rmse", "best_epoch"))}) + f" -> {out}")


@main.command()
@_train_options
@click.option("--grid", multiple=True, required=True,
              help='NAME=V1,V2,... over a train option; repeat for a product, e.g. --grid "window=4,8,12,16" '
                   '--grid "streams=spatial,temporal,both" or --grid "input=dphase,phase,flow".')
@click.option("--fold-ids", default=None, help="Run only these folds (comma list), e.g. 0 for a quick look.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder: one subfolder per cell and fold, ablation.csv and ablation.md.")
def ablate(grid, fold_ids, out, **kw):
    """Run a grid of trainings from one cache and tabulate mean CCC across folds (the paper's Tables 3-5).

    Finished runs (their metrics.json exists) are skipped, so an interrupted ablation picks up where it stopped.
    """
    from train.ablate import ablate as run

    cfg = _train_config(out=str(out), **kw)
    ids = [int(i) for i in fold_ids.split(",")] if fold_ids else None
    table = run(cfg.cache, cfg.dataset, list(grid), out, cfg, folds=cfg.folds, fold_ids=ids)
    click.echo(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    click.echo(f"tables: {out / 'ablation.md'}, {out / 'ablation.csv'}")


if __name__ == "__main__":
    sys.exit(main())
