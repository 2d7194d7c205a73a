"""`cli.py features`: from flags to a stage-graph run (datasets, settings, cluster options)."""
from __future__ import annotations

import shutil
from pathlib import Path

from pipeline import extract, graph, store
from pipeline.manifest import get_dataset, list_videos, load_manifest, videos_from_files


def features_command(*, dataset, root, video_files, cache, stages, extras, weights, workers, scheduler, cluster,
                     device, keep_faces, gamma_jitter, motion, face, seed, force, dry_run, progress, echo):
    """Resolve the videos and settings, then run the stage graph; returns its Summary."""
    from features.backbone import resolve_weights

    manifest = load_manifest()
    if video_files:
        name, entries = "videos", videos_from_files(video_files)
    else:
        name, entries = dataset, list_videos(get_dataset(dataset, root, manifest))
    bad = [s for s in stages if s not in ("align", "motion", "spatial")] + \
          [e for e in extras if e not in ("phase", "flow")]
    if bad:
        from features.errors import BadInputError
        raise BadInputError(None, f"unknown stage or extra {bad}", "stages: align,motion,spatial; extras: phase,flow")
    w = "random" if weights == "random" else resolve_weights(weights) if "spatial" in stages else "random"
    if w == "random" and "spatial" in stages:
        echo("note: --weights random: a seeded random ResNet50, NOT the paper's FER+ features (demo and tests only)")
    s = extract.Settings(stages=tuple(dict.fromkeys(("align", *stages))), extras=tuple(extras), weights=str(w),
                         keep_faces=keep_faces, gamma_jitter=gamma_jitter, seed=seed, motion=motion, face=face,
                         device=device)
    if force and not dry_run:
        for e in entries:
            shutil.rmtree(store.video_dir(cache, name, e.video), ignore_errors=True)
    opts = {**(manifest.get("cluster") or {}), **{k: v for k, v in cluster.items() if v is not None}}
    return graph.run(entries, Path(cache), name, s, scheduler=scheduler, workers=workers,
                     jobs=int(opts.get("jobs") or 1), cluster_opts=opts, dry_run=dry_run, progress=progress, echo=echo)
