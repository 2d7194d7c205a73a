"""Checkpoints hold tensors and plain types only and are loaded with ``torch.load(..., weights_only=True)``.

A checkpoint is a dict of tensors, str/int/float/bool/None, lists and dicts: the model's state dict, the config and
the run's identity as dicts, RNG states as tensors, the lr scheduler's state with its ``Counter`` made a dict.
Researchers exchange checkpoints; unpickling anything else can run code, so a file that needs other objects is
refused as "not a mimamo checkpoint" without being run. Checkpoints written by earlier versions hold the same plain
types (their scheduler Counter is one of the few types torch's safe loader accepts), so they still load.
"""
from __future__ import annotations

import collections
import hashlib
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from features.errors import BadInputError

_WRITTEN_BY = "pass a best.pt or last.pt written by `cli.py train`"


def plain(x, where: str = "checkpoint"):
    """A copy of x made of tensors, dicts, lists and str/int/float/bool/None; anything else is a bug (TypeError)."""
    if isinstance(x, torch.Tensor) or x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, dict):
        return {k: plain(v, f"{where}.{k}") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v, where) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{where}: a {type(x).__name__} cannot go into a checkpoint (tensors and plain types only)")


def sched_state(sched) -> dict:
    """The lr scheduler's state as plain types (MultiStepLR keeps its milestones in a Counter)."""
    state = dict(sched.state_dict())
    if isinstance(state.get("milestones"), collections.Counter):
        state["milestones"] = dict(state["milestones"])
    return plain(state, "scheduler")


def load_sched(sched, state: dict) -> None:
    """Restore ``sched_state`` output (and older checkpoints' Counter) into a scheduler."""
    state = dict(state)
    if isinstance(state.get("milestones"), dict):
        state["milestones"] = collections.Counter({int(k): v for k, v in state["milestones"].items()})
    sched.load_state_dict(state)


def save(obj: dict, path: Path) -> None:
    """Write atomically (a kill never leaves a half-written checkpoint); refuses non-plain content."""
    obj = {k: (v if k in ("model", "opt") else plain(v, k)) for k, v in obj.items()}
    tmp = Path(path).with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load(path: str | Path) -> dict:
    """A mimamo checkpoint as a dict, read with weights_only=True; anything else is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "checkpoint not found", _WRITTEN_BY)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        raise BadInputError(path, "not a mimamo checkpoint: it holds Python objects other than tensors and plain "
                            "types" + (f" ({found.group(1)})" if found else "") + ", whose unpickling can run code, "
                            "so it was not loaded", _WRITTEN_BY) from None
    except Exception as e:   # not a torch file at all: truncated, another format, a directory renamed
        raise BadInputError(path, f"not a mimamo checkpoint (unreadable: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})", _WRITTEN_BY) from None
    if not isinstance(ck, dict) or not {"model", "model_args", "config"} <= set(ck):
        raise BadInputError(path, "not a mimamo checkpoint (it lacks model, model_args or config)", _WRITTEN_BY)
    return ck


def sha256(path: str | Path) -> str:
    """Content hash of a file (init checkpoints enter a run's identity by content, not by path)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
