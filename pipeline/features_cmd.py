"""`cli.py features`: from flags to a stage-graph run (datasets, settings, motion variants, cluster options)."""
from __future__ import annotations

import os
from pathlib import Path

from features.errors import BadInputError
from pipeline import arrays, face_transforms, graph, store
from pipeline.manifest import get_dataset, list_videos, load_manifest, videos_from_files
from pipeline.settings import EXTRAS, STAGES, Settings, motion_config, suggest_name
from pipeline.wording import counted


def features_command(*, dataset, root, video_files, cache, stages, extras, weights, workers, scheduler, cluster,
                     device, keep_faces, gamma_jitter, motion, face, seed, force, dry_run, progress, echo,
                     motion_variant=None, replace_variant=False, wait_for_lock=0.0, faces=None, crops_dir=None,
                     openface_dir=None, label_slack=0, chunk_frames=256, prune=False):
    """Resolve the videos and settings, then run the stage graph; returns its Summary."""
    from features.backbone import resolve_weights

    manifest = load_manifest()
    ds = None if video_files else get_dataset(dataset, root, manifest)
    explicit = faces is not None
    faces, faces_dir = resolve_faces(ds, faces, crops_dir, openface_dir)
    if ds is not None and not explicit:
        keep_face_source(Path(cache), dataset, faces)
    if video_files:
        if prune:
            raise BadInputError(None, "--prune needs --dataset", "video files given as arguments add to the cache; "
                                "a dataset's listing says which cached videos it no longer has")
        name, entries = "videos", videos_from_files(video_files)
    else:
        name, entries = dataset, list_videos(ds, require_video=faces != "cropped_aligned", echo=echo)
    bad = [s for s in stages if s not in STAGES] + [e for e in extras if e not in EXTRAS]
    if bad:
        raise BadInputError(None, f"unknown stage or extra {bad}", "stages: align,motion,spatial; extras: phase,flow,flip")
    stages = tuple(dict.fromkeys(("align", *stages)))
    variant, overrides = resolve_motion_variant(motion_variant, motion, Path(cache), name)
    transforms = face_transforms.transform_part(variant)
    if variant is not None and "motion" not in stages and "phase" not in extras and not (transforms and "flow" in extras):
        raise BadInputError(None, f"--motion-variant {variant} but no motion array is asked for",
                            "add motion to --stages (dphase), or --extras phase" + (" or flow" if transforms else ""))
    w = "random" if weights == "random" else resolve_weights(weights) if "spatial" in stages else "random"
    if w == "random" and "spatial" in stages:
        echo("note: --weights random: a seeded random ResNet50, NOT the paper's FER+ features (demo and tests only)")
    if variant is not None and "flow" in extras:
        echo(f"note: flow has no motion settings: it is written as `flow{'@' + transforms if transforms else ''}`, "
             "shared by every motion variant" + (" with these face transforms" if transforms else ""))
    s = Settings(stages=stages, extras=tuple(extras), weights=str(w), keep_faces=keep_faces,
                 gamma_jitter=gamma_jitter, seed=seed, motion=overrides, face=face, device=device,
                 motion_variant=variant, faces=faces, faces_dir=faces_dir, label_slack=label_slack,
                 chunk_frames=chunk_frames)
    opts = {**(manifest.get("cluster") or {}), **{k: v for k, v in cluster.items() if v is not None}}
    return graph.run(entries, Path(cache), name, s, scheduler=scheduler, workers=workers,
                     jobs=int(opts.get("jobs") or 1), cluster_opts=opts, dry_run=dry_run, progress=progress, echo=echo,
                     force=force, replace_variant=replace_variant, wait_for_lock=wait_for_lock,
                     whole_dataset=not video_files, prune=prune)


def keep_face_source(cache: Path, dataset: str, faces: str) -> None:
    """Refuse a run whose face source comes from a default (the manifest's `faces`, else video) other than the one
    the dataset's done videos were made from.

    A changed face source rebuilds every such video (its faces and every array made from them: pipeline/faces.py
    origin_change). Asked for with --faces, that is the user's choice; by default it was a repair hint or a new
    variant's run that only left out --faces, and it threw away a cache of organiser-crop features (hours on a real
    dataset) for video ones, leaving the cache made two ways. So a default never switches the source: --faces does.
    """
    try:
        idx = store.read_index(cache, dataset)
    except store.UnreadableIndex:
        return   # the run reports the index itself
    if idx is None or "faces" not in idx.columns:
        return
    made = idx.faces.fillna("video")[(idx.status == "done") & (idx.faces.fillna("video") != faces)].value_counts()
    if made.empty:
        return
    sources = ", ".join(f"{src} ({counted(n, 'video')})" for src, n in made.items())
    keep = made.index[0]   # the source most done videos came from
    raise BadInputError(store.dataset_dir(cache, dataset) / "index.parquet",
                        f"{made.sum()} done videos' faces come from {sources}, but this run would take them from "
                        f"{faces!r} (the dataset's default: the manifest's 'faces', else video), which rebuilds them "
                        "whole (faces, ΔPhase, ResNet50 features)",
                        f"pass --faces {keep}" + (" (and --crops-dir DIR unless the manifest lists its crops)"
                                                  if keep == "cropped_aligned" else " (and --openface-dir DIR unless "
                                                  "the manifest names it)" if keep == "openface" else "")
                        + f" to keep them, or --faces {faces} to rebuild them from that source")


def resolve_faces(ds, faces: str | None, crops_dir, openface_dir) -> tuple[str, str | None]:
    """(face source, the folder it reads) from --faces/--crops-dir/--openface-dir, else the dataset's manifest entry
    (`faces`, `crops`, `openface_dir`, folders relative to its root), else the video path."""
    opts = ds.options if ds is not None else {}
    faces = faces or opts.get("faces") or "video"
    flag, key, what = {"cropped_aligned": (crops_dir, "crops", "--crops-dir"),
                       "openface": (openface_dir, "openface_dir", "--openface-dir")}.get(faces, (None, None, None))
    stray = [f for f, v in (("--crops-dir", crops_dir), ("--openface-dir", openface_dir)) if v and f != what]
    if stray:
        raise BadInputError(None, f"{stray[0]} given, but faces come from {faces!r}",
                            f"add --faces {'cropped_aligned' if stray[0] == '--crops-dir' else 'openface'}")
    if key is None:
        return faces, None
    # crops may come in several folders (ABAW5 on: cropped_aligned and cropped_aligned_new_50_vids): --crops-dir
    # repeated, or a list in the manifest; they are kept as one PATH-like string (pipeline.faces.crop_folder)
    given = [flag] if isinstance(flag, (str, Path)) else list(flag or [])
    named = opts.get(key) if ds is not None else None
    folders = [Path(f) for f in given] or [ds.root / n for n in ([named] if isinstance(named, str) else named or [])]
    if not folders:
        raise BadInputError(None, f"--faces {faces} needs the folder it reads", f"pass {what} DIR"
                            + (f" or set '{key}' for dataset {ds.name!r} in the manifest" if ds is not None else ""))
    for folder in folders:
        if not folder.is_dir():
            raise BadInputError(folder, f"the {what[2:]} folder does not exist", f"pass {what} DIR" + (
                f" (or set '{key}' for dataset {ds.name!r} in the manifest)" if ds is not None else ""))
    if len(folders) > 1 and faces != "cropped_aligned":
        raise BadInputError(None, f"{what} takes one folder", "give it once")
    return faces, os.pathsep.join(str(f.resolve()) for f in folders)


def resolve_motion_variant(variant: str | None, flags: dict, cache: Path, dataset: str) -> tuple[str | None, dict]:
    """(variant, MotionConfig overrides) from --motion-variant and the --motion-* flags.

    No name: the default variant, whose settings are always the defaults (flags without a name are an error that
    suggests one, so a changed setting never replaces the default dphase). A built-in name (arrays.MOTION_VARIANTS)
    means its table entry. Another name is defined by the flags given with it, or, without flags, by the settings
    the cache recorded for it. A name may end in face transforms (``paper+gamma0.2``: pipeline/face_transforms.py),
    which take the motion variant's settings; the flip is asked for with --extras flip instead.
    """
    if variant is not None:
        arrays.check_variant(variant)
        base, t = face_transforms.split_variant(variant)
        if t.flip:
            plain = face_transforms.without_flip(variant)
            raise BadInputError(None, f"--motion-variant {variant}: the mirrored faces' arrays are made with --extras flip",
                                (f"use --motion-variant {plain} --extras flip" if plain else "use --extras flip"))
        if t:
            if base is None and flags:
                raise BadInputError(None, f"motion settings {flags} with the face transforms {variant} only",
                                    f"name the motion settings too, e.g. --motion-variant {suggest_name(flags)}+{variant}")
            overrides = resolve_motion_variant(base, flags, cache, dataset)[1]
            recorded = recorded_variant(cache, dataset, base) if base not in arrays.MOTION_VARIANTS else None
            if recorded is not None and recorded != overrides:   # one name, one set of settings
                raise BadInputError(None, f"--motion-variant {variant}: the cache holds {base} with {recorded}, these "
                                    f"flags say {overrides}", "drop the flags, or name these settings otherwise")
            return variant, overrides
        face_transforms.check_motion_name(variant)
    if variant is None:
        if flags:
            raise BadInputError(None, f"motion settings {flags} without --motion-variant",
                                "plain dphase always means the default settings; name this variant, e.g. "
                                f"--motion-variant {suggest_name(flags)}")
        return None, {}
    arrays.check_variant(variant)
    if variant in arrays.MOTION_VARIANTS:
        builtin = dict(arrays.MOTION_VARIANTS[variant])
        # flags that say the same (e.g. --motion-v1 --motion-variant v1) are the built-in variant itself
        if flags and motion_config(flags) != motion_config(builtin):
            raise BadInputError(None, f"--motion-variant {variant} is built in ({builtin}); "
                                f"the flags {flags} would change it", "give these settings their own variant name")
        return variant, builtin
    if flags:
        return variant, dict(flags)
    recorded = recorded_variant(cache, dataset, variant)
    if recorded is None:
        raise BadInputError(None, f"unknown motion variant {variant!r}",
                            f"built in: {', '.join(arrays.MOTION_VARIANTS)}; or define it with motion flags, e.g. "
                            f"--motion-variant {variant} --motion-mean-window 9")
    return variant, recorded


def recorded_variant(cache: Path, dataset: str, variant: str) -> dict | None:
    """The motion settings a cache recorded for a variant (from the first group that holds it), or None.

    Arrays of the variant with face transforms (dphase@mw9+gamma0.2, dphase@mw9+flip) hold its settings too: a cache
    holding only those is asked for `--motion-variant mw9+gamma0.2` by its repair commands, which read mw9 here."""
    videos = store.dataset_dir(cache, dataset) / "videos"
    if not videos.is_dir():
        return None
    for d in sorted(videos.iterdir()):
        if store.group_status(cache, dataset, d.name) != "done":
            continue
        made = dict(store.open_video(cache, dataset, d.name).attrs.get("made_with", {}))
        for name, spec in made.items():
            if "motion" in spec and _motion_name(arrays.split_name(name)[1]) == variant:
                return dict(spec["motion"])
    return None


def _motion_name(variant: str | None) -> str | None:
    try:
        return face_transforms.motion_part(variant)
    except BadInputError:   # a name this version does not read: no variant of ours
        return None
