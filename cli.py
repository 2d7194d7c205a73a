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


if __name__ == "__main__":
    sys.exit(main())
