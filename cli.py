"""mimamo command line: thin. Each command parses, calls one function, prints.

The group and entry point; the commands live in commands/, a module per family (extraction, training, reading).
"""
from __future__ import annotations

import sys

import click

from commands.extraction import demo_data, features
from commands.reading import export, info, inspect_cmd, predict
from commands.training import ablate, robustness, train
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


for command in (demo_data, features, info, export, inspect_cmd, predict, train, ablate, robustness):
    main.add_command(command)


if __name__ == "__main__":
    sys.exit(main())
