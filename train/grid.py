"""The axes of an ablation grid (`ablate --grid NAME=V1,V2`): which train settings may vary between cells, how each
value is read, and the checks every cell passes before the first one trains.

A value is read as its setting's type, never kept as the text typed: `pool_validation=false` is False (the string
"false" is true), `finetune_lr=0.01` a float (as text it reached torch's SGD only after the single-stream cells had
trained). A setting that holds a list takes its items joined by ':' (',' separates the axis's values):
`milestones=10:20,20:25` is two cells, milestones (10, 20) and (20, 25); `splits=train:validation,train`.

Not axes: the cache and dataset (one table reads one cache: its Data line, its fold-mean column and the identities
its rows are compared by), the fold and folds (the table's own: --folds, --fold-ids), the output folder, and how a
run is carried out (device, threads, workers, resume, reuse...: give them as flags, for every cell).
"""
from __future__ import annotations

from dataclasses import replace

from features.errors import BadInputError
from pipeline import arrays, store
from train import config
from train.config import TrainConfig

SEP = ":"   # between the items of one value of a list setting (milestones=10:20)
_NONE = ("none", "null", "")
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _int(v: str) -> int:
    return int(v)


def _float(v: str) -> float:
    return float(v)


def _bool(v: str) -> bool:
    if v.lower() in _TRUE:
        return True
    if v.lower() in _FALSE:
        return False
    raise ValueError(v)


def _optional(cast):
    return lambda v: None if v.lower() in _NONE else cast(v)


def _choice(*names):
    def cast(v: str) -> str:
        if v not in names:
            raise ValueError(v)
        return v
    return cast


def _ints(v: str) -> tuple:
    return () if v.lower() in _NONE else tuple(int(x) for x in v.split(SEP))


def _names(v: str) -> tuple | None:
    return None if v.lower() in (*_NONE, "all") else tuple(x for x in v.split(SEP) if x) or None


def _augment(v: str) -> str | None:
    return None if v.lower() in _NONE else _choice("flip")(v)


# name -> (how a value is read, what values are, the smallest and largest allowed)
AXES: dict[str, tuple] = {
    "streams": (_choice("both", "spatial", "temporal"), "both, spatial or temporal", None, None),
    "input": (str, "dphase, phase, flow or a variant the cache holds, e.g. dphase@paper", None, None),
    "window": (_int, "an integer", 4, 16),
    "arch": (_choice("paper", "released"), "paper or released", None, None),
    "width": (_int, "an integer", 2, 512),
    "single_gru": (_bool, "true or false", None, None),
    "pool_validation": (_optional(_bool), "true, false or none (the protocol's default)", None, None),
    "splits": (_names, f"split names joined by '{SEP}', or all", None, None),
    "seed": (_int, "an integer", 0, None),
    "epochs": (_int, "an integer", 1, 10000),
    "lr": (_float, "a number", 0.0, None),
    "finetune_lr": (_optional(_float), "a number, or none (--lr)", 0.0, None),
    "milestones": (_ints, f"epochs joined by '{SEP}', e.g. 10:20, or none", 1, None),
    "momentum": (_float, "a number", 0.0, None),
    "weight_decay": (_float, "a number", 0.0, None),
    "batch_size": (_int, "an integer", 1, 4096),
    "length": (_int, "an integer", 1, None),
    "stride": (_int, "an integer", 1, None),
    "patience": (_int, "an integer", 1, 1000),
    "pretrain": (_bool, "true or false (streams=both: single streams first, or from scratch)", None, None),
    "augment": (_augment, "none or flip", None, None),
}
_STRICT = ("lr", "finetune_lr")   # must be above their smallest value, not equal to it
REFUSED = {"cache": "one table reads one cache (its Data line, its fold-mean column); run an ablate per cache",
           "dataset": "one table reads one dataset; run an ablate per dataset",
           "fold": "the table's folds are --folds and --fold-ids", "folds": "the table's folds are --folds and --fold-ids",
           "out": "each cell has its own folder under --out"}


def help_text() -> str:
    """The axes and how their values are written, for --help and errors."""
    return ", ".join(AXES)


def show(value) -> str:
    """A value as a cell's name and table show it: milestones (10, 20) -> "10:20"; others as str."""
    if isinstance(value, (tuple, list)):
        return SEP.join(map(str, value)) or "none"
    return str(value)


def parse_grid(grid: list[str]) -> list[tuple[str, list]]:
    """["window=4,8", "milestones=10:20,20:25"] -> [("window", [4, 8]), ("milestones", [(10, 20), (20, 25)])].

    Each value is read as its setting's type and range-checked; a name that is no axis, a name given twice and a value
    given twice are refused, each naming the --grid and what to write."""
    axes, seen = [], set()
    for spec in grid:
        key, eq, vals = spec.partition("=")
        key = key.strip().replace("-", "_")
        if key in REFUSED or key in config.RUNTIME and key != "pretrain":
            why = REFUSED.get(key) or "it says how a run is carried out, not what it is: give it as a flag, for every cell"
            raise BadInputError(None, f"--grid {spec!r}: {key} cannot be a grid axis ({why})", f"axes: {help_text()}")
        if key not in AXES or not eq or not vals.strip():
            raise BadInputError(None, f"bad --grid {spec!r}", f"write NAME=V1,V2 with NAME one of {help_text()}; e.g. "
                                "window=4,8,12,16, streams=spatial,temporal,both, input=dphase,phase,flow; a list "
                                f"setting joins its items with '{SEP}': milestones=10:20,20:25")
        if key in seen:
            raise BadInputError(None, f"--grid {key} is given twice", f"give all its values in one --grid {key}=V1,V2,...")
        seen.add(key)
        cast, what, lo, hi = AXES[key]
        values = []
        for text in (v.strip() for v in vals.split(",")):
            if not text:
                continue
            try:
                value = cast(text)
            except ValueError:
                raise BadInputError(None, f"bad value {text!r} in --grid {spec!r}", f"{key} takes {what}") from None
            for item in value if isinstance(value, tuple) else [value]:
                if isinstance(item, (int, float)) and not isinstance(item, bool) and (
                        (lo is not None and (item < lo or (item == lo and key in _STRICT))) or
                        (hi is not None and item > hi)):
                    limit = f"above {lo}" if key in _STRICT else f"{lo}..{hi}" if hi is not None else f">= {lo}"
                    raise BadInputError(None, f"{key}={text} in --grid {spec!r} is out of range", f"{key} takes {limit}")
            if value in values:
                raise BadInputError(None, f"--grid {spec!r} gives {key}={show(value)} twice",
                                    "give each value once: a cell is one setting")
            values.append(value)
        axes.append((key, values))
    return axes


def check_cells(cells: list[dict], base: TrainConfig) -> None:
    """Every cell's settings as `train` checks them, and every input axis's value held by the cache, before the first
    cell trains (a bad one found when its turn came left the cells before it trained and no table)."""
    for cell in cells:
        try:
            config.check(replace(base, **cell))
        except BadInputError as e:
            raise BadInputError(e.path, f"cell {', '.join(f'{k}={show(v)}' for k, v in cell.items())}: {e.problem}",
                                e.hint) from None
    inputs = list(dict.fromkeys(c["input"] for c in cells if "input" in c))
    held = held_inputs(base.cache, base.dataset) if inputs else None
    for text in inputs:
        if held is not None and not set(arrays.input_arrays(text)) <= held["arrays"]:
            raise BadInputError(store.dataset_dir(base.cache, base.dataset),
                                f"--grid input={text}: the cache holds no {text} (no video of {base.dataset} has it)",
                                f"the inputs it holds: {', '.join(held['inputs']) or 'none'}. A new variant is made "
                                "by `features --motion-variant NAME` with the motion flags that define it")
    # the mirrored arrays of --augment flip made as the clean ones (train/augment.py), before any cell trains
    flipped = list({tuple(config.used_arrays(c)): c for c in (replace(base, **cell) for cell in cells)
                    if c.augment == "flip"}.values())
    if flipped:
        from train.augment import check_pairs

        videos = list(store.done_videos(base.cache, base.dataset).video)
        for cfg in flipped:
            check_pairs(cfg, videos)


def held_inputs(cache, dataset: str) -> dict | None:
    """{"arrays": every array some done video holds (store.held_arrays), "inputs": the model inputs they make whole
    ("dphase@paper")}, from the index (None without one: train then says what is missing)."""
    held = store.held_arrays(cache, dataset)
    if held is None:
        return None
    names = set(held)
    inputs = []
    for name in held:
        kind = arrays.kind_of(name)
        if kind.params not in ("motion", "flow"):   # the temporal stream's inputs
            continue
        variant = arrays.split_name(name)[1]
        text = kind.name + (f"@{variant}" if variant else "")
        if set(arrays.input_arrays(text)) <= names and text not in inputs:
            inputs.append(text)
    return {"arrays": names, "inputs": inputs}
