"""One fingerprint per array across a dataset's videos: what every reader (train, predict, export) requires.

A `features` run that changed an array's settings on some videos only (killed mid-way through a --replace-variant,
or run on a subset) leaves the cache mixed: each group is consistent in itself, but rows read across videos would
come from two ways of making them under one name.
"""
from __future__ import annotations

from collections import defaultdict

from features.errors import BadInputError
from pipeline import store

# Arrays whose fingerprint is each video's own by design, never one across videos: the labels (the sha256 of the
# video's own label files). Readers check them per video (store.check_arrays), and nothing refuses them for differing.
PER_VIDEO = ("labels",)


def listing(videos: list[str], limit: int = 4, sep: str = ", ") -> str:
    """The first ``limit`` names, and how many more."""
    return sep.join(videos[:limit]) + (f" and {len(videos) - limit} more" if len(videos) > limit else "")


def one_fingerprint(cache, dataset: str, fps: dict[str, dict], names: list[str]) -> dict[str, str]:
    """{array: fingerprint} when each array has one fingerprint across the videos of ``fps`` ({video: {array:
    fingerprint}}) that hold it; else an error naming the array, each fingerprint's videos and the repair."""
    out = {}
    for name in names:
        sides = defaultdict(list)
        for video, f in sorted(fps.items()):
            if name in f:
                sides[f[name]].append(video)
        if len(sides) > 1:
            desc = "; ".join(f"{fp} in {listing(vs)}" for fp, vs in sorted(sides.items(), key=lambda s: -len(s[1])))
            raise BadInputError(store.dataset_dir(cache, dataset), f"array {name!r} was made with different settings "
                                f"across videos ({desc})", "recompute it so every video uses one setting: "
                                f"`{store.repair_command(cache, dataset, [name])}` with the flags you want "
                                "(`info --cache` shows what each holds)")
        if sides:
            out[name] = next(iter(sides))
    return out
