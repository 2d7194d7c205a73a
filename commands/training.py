"""Commands that train from a cache: train, ablate (a grid of trainings), robustness (paper Fig. 5).

They share the training flags (_train_options) and build one TrainConfig from them (_train_config).
"""
from __future__ import annotations

from pathlib import Path

import click

from commands.common import split_csv, summary_line
from features.errors import BadInputError


def _train_options(f):
    """The training flags shared by `train`, `ablate` and `robustness` (defaults: the paper's Aff-Wild settings)."""
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


@click.command(short_help="Train MIMAMO Net from a cache and score it (metrics.json).")
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


@click.command(short_help="A grid of trainings from one cache: mean CCC per setting.")
@_train_options
@click.option("--grid", multiple=True, required=True,
              help='NAME=V1,V2,... over a train option; repeat for a product (each NAME once), e.g. --grid '
                   '"window=4,8,12,16" --grid "streams=spatial,temporal,both" or --grid "input=dphase,phase,flow". '
                   'A list setting joins its items with ":": --grid "milestones=10:20,20:25" (two cells); booleans '
                   'are true/false, optional settings take none. Axes: streams, input, window, arch, width, '
                   'single_gru, pool_validation, splits, seed, epochs, lr, finetune_lr, milestones, momentum, '
                   'weight_decay, batch_size, length, stride, patience, pretrain, augment (not the cache, dataset, '
                   'folds or how runs are carried out: those are flags for every cell).')
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
    for note in table.attrs.get("notes") or []:
        click.echo(note)
    protocols = set(table["protocol"]) if "protocol" in table else set()
    if len(protocols) == 1:   # said once above the table, not on every row
        click.echo(protocols.pop())
        table = table.drop(columns="protocol")
    from train.ablate import score_columns

    shown = {c: (lambda x: f"{x:.3f}") if c in score_columns(table) else str for c in table.columns}
    click.echo(table.to_string(index=False, formatters=shown))   # the grid's values as they are: lr 5e-05, 0.0001
    click.echo(f"tables: {out / 'ablation.md'}, {out / 'ablation.csv'}")


@click.command(short_help="Temporal-model CCC against illumination change (paper Fig. 5).")
@_train_options
@click.option("--betas", default="0,0.2,0.4,0.6,0.8", show_default=True,
              help="Illumination variability: per-frame gamma g ~ U[1-beta, 1+beta], each beta in [0, 1), written "
                   "as Python's '%g' prints it (it names the corrupted inputs: 0.2 -> dphase@gamma0.2).")
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
    table = run(cfg.cache, cfg.dataset, parse_betas(betas), list(split_csv(inputs)), out, cfg, fold_ids=ids,
                gamma_seed=gamma_seed, progress=not no_progress, echo=click.echo)
    cols = ["input", "beta", "reads", "ccc_arousal", "ccc_valence", "ccc_mean", "ccc_mean_change", "folds"]
    click.echo(table[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    click.echo(f"tables: {out / 'robustness.md'}, {out / 'robustness.csv'}; figure: {out / 'robustness.png'}")
