"""The `features` command a reader prints for an unusable video, pasted into a shell as printed, repairs the cache.

A real Aff-Wild2 layout (tests/affwild2_layout.py: OpenCV-encoded videos, organiser crop JPEGs) under a root given
with --root, its crops in a folder outside the root given with --crops-dir (both paths with a space), a label file a
line longer than its video (--label-slack 1) and random ResNet50 weights: every one of these is a flag the repair
must repeat from what the cache recorded, or the pasted command fails (no root, no crops, a label file that does not
fit, no weights file) or is refused (faces from the default source: features_cmd.keep_face_source).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from affwild2_layout import build_affwild2_layout, default_specs
from click.testing import CliRunner

from cli import main
from pipeline import store
from pipeline.features_cmd import resolve_motion_variant

ROOT = Path(__file__).resolve().parent.parent
BROKEN = "video10_1"   # its label file has a line more than the video decodes: made only with --label-slack 1
OTHER = "1-30-176x144"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(the layout, the crops folder, the cache) made by `features` with every non-default flag above."""
    base = tmp_path_factory.mktemp("repair")
    layout = build_affwild2_layout(base / "Aff-Wild2 copy", specs=default_specs()[:2], openface=False)
    crops = base / "organiser crops"
    shutil.move(layout.crops_dir, crops)   # outside the root: only --crops-dir finds them
    mp = pytest.MonkeyPatch()
    for var in ("AFFWILD2_ROOT", "MIMAMO_MANIFEST", "MIMAMO_WEIGHTS"):   # the root and weights come from flags only
        mp.delenv(var, raising=False)
    cache = base / "zarr cache"
    r = CliRunner().invoke(main, ["features", "--dataset", "affwild2", "--root", str(layout.root), "--cache",
                                  str(cache), "--faces", "cropped_aligned", "--crops-dir", str(crops), "--weights",
                                  "random", "--seed", "3", "--label-slack", "1", "--workers", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert not (ROOT / "weights" / "resnet50_ferplus_dag.pth").exists()   # a repair without --weights would fail
    yield layout, crops, cache
    mp.undo()


def export(cache: Path, out: Path):
    return CliRunner().invoke(main, ["export", "--cache", str(cache), "--dataset", "affwild2", "--out", str(out)])


def run_as_printed(command: str) -> subprocess.CompletedProcess:
    """The command split as a shell would, run in the repository; `python` is this interpreter."""
    argv = shlex.split(command)
    assert argv[:2] == ["python", "cli.py"], command
    env = {k: v for k, v in os.environ.items() if k not in ("AFFWILD2_ROOT", "MIMAMO_MANIFEST", "MIMAMO_WEIGHTS")}
    return subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def break_group(cache: Path, how: str) -> None:
    if how == "group deleted":   # the index still says done: readers find no group
        shutil.rmtree(store.video_dir(cache, "affwild2", BROKEN))
    else:   # an update killed mid-way
        store.mark_stale(store.open_video(cache, "affwild2", BROKEN, mode="r+"), ["dphase_s0"])


@pytest.mark.parametrize("how", ["group deleted", "array stale"])
def test_the_printed_command_repairs_the_group(made, tmp_path, how):
    layout, crops, made_cache = made
    cache = tmp_path / "zarr cache"
    shutil.copytree(made_cache, cache)
    break_group(cache, how)
    r = export(cache, tmp_path / "a.h5")
    assert r.exit_code == 1 and BROKEN in r.output, r.output
    commands = re.findall(r"`(python cli\.py features [^`]*)`", r.output)
    assert len(commands) == 1, r.output
    argv = shlex.split(commands[0])   # each value one token, spaces and all
    assert argv[argv.index("--root") + 1] == str(layout.root.resolve())
    assert argv[argv.index("--crops-dir") + 1] == str(crops.resolve())
    assert argv[argv.index("--cache") + 1] == str(cache)
    for flag, value in (("--faces", "cropped_aligned"), ("--label-slack", "1"), ("--weights", "random"),
                        ("--seed", "3")):
        assert argv[argv.index(flag) + 1] == value, commands[0]

    done = run_as_printed(commands[0])
    assert done.returncode == 0, done.stdout + done.stderr
    r = export(cache, tmp_path / "b.h5")
    assert r.exit_code == 0, r.output
    fixed, other = (dict(store.open_video(cache, "affwild2", v).attrs) for v in (BROKEN, OTHER))
    assert fixed["fingerprints"] == {**other["fingerprints"], "labels": fixed["fingerprints"]["labels"]}
    assert fixed["faces"] == "cropped_aligned" and fixed["label_frame_diff"] == 1


def test_a_command_without_the_recorded_flags_is_refused_or_fails(made, tmp_path):
    """What the commands printed before named: the default face source is refused on this cache."""
    cache = tmp_path / "zarr cache"
    shutil.copytree(made[2], cache)
    break_group(cache, "group deleted")
    bare = run_as_printed(f"python cli.py features --dataset affwild2 --cache {shlex.quote(str(cache))} "
                          f"--root {shlex.quote(str(made[0].root))} --stages align,motion,spatial")
    assert bare.returncode != 0 and "pass --faces cropped_aligned" in bare.stderr + bare.stdout


def test_a_variant_held_only_with_face_transforms_is_read_for_its_repair(tmp_path):
    """A cache made with `--motion-variant mw9+gamma0.2 --motion-mean-window 9` holds no plain dphase@mw9; its repair
    command names `--motion-variant mw9+gamma0.2` without the flags, which must read mw9's settings from the group."""
    made = {"dphase_s0@mw9+gamma0.2": {"motion_variant": "mw9+gamma0.2", "motion": {"mean_window": 9}}}
    store.write_video(tmp_path, "ds", "v1", {"valid": np.ones(4, bool)}, {"n_frames": 4, "made_with": made})
    assert "--motion-variant mw9+gamma0.2" in store.repair_command(tmp_path, "ds", ["dphase_s0@mw9+gamma0.2"])
    assert resolve_motion_variant("mw9+gamma0.2", {}, tmp_path, "ds") == ("mw9+gamma0.2", {"mean_window": 9})


def test_a_damaged_index_names_the_face_source_from_the_groups(made, tmp_path):
    """The index is where the done videos' face source is counted; cut short, its hint read the source from the groups.
    Without --faces that run is not refused (keep_face_source cannot read the index either): it rebuilt every video
    from the video files, throwing the organiser-crop features away."""
    cache = tmp_path / "zarr cache"
    shutil.copytree(made[2], cache)
    index = store.dataset_dir(cache, "affwild2") / "index.parquet"
    index.write_bytes(index.read_bytes()[:100])
    r = export(cache, tmp_path / "a.h5")
    assert r.exit_code != 0 and "the index cannot be read" in r.output, r.output
    command = re.search(r"`(python cli\.py features [^`]*)`", r.output).group(1)
    assert "--faces cropped_aligned" in command, command
    assert "--stages align,spatial,motion" in command, command   # a video not yet done would get its faces only
    done = run_as_printed(command)
    assert done.returncode == 0 and "done: 0 new, 0 updated, 2 skipped" in done.stdout, done.stdout + done.stderr
    assert {store.open_video(cache, "affwild2", v).attrs["faces"] for v in (BROKEN, OTHER)} == {"cropped_aligned"}
    assert export(cache, tmp_path / "b.h5").exit_code == 0


def test_a_dataset_without_an_index_is_told_the_recorded_flags_and_the_command_runs_as_printed(made, tmp_path):
    """No index.parquet beside done groups (a first `features` run stopped before it wrote it): readers said
    `python cli.py features --dataset D --cache C` typed by hand, without the root, face source, crops folder, slack
    or weights the groups record, and unquoted (the folders here have spaces): refused or failing as pasted. The
    command now repeats them and runs as printed; afterwards the videos are known as done."""
    from train import videos

    layout, crops, made_cache = made
    cache = tmp_path / "zarr cache"
    shutil.copytree(made_cache, cache)
    (store.dataset_dir(cache, "affwild2") / "index.parquet").unlink()
    r = export(cache, tmp_path / "a.h5")
    assert r.exit_code != 0 and "no feature cache for dataset 'affwild2'" in r.output, r.output
    command = re.search(r"run `(python cli\.py features [^`]*)` first", " ".join(r.output.split())).group(1)
    for flag in (f"--root {shlex.quote(str(layout.root))}", f"--crops-dir {shlex.quote(str(crops))}",
                 "--faces cropped_aligned", "--weights random", "--seed 3", "--label-slack 1",
                 f"--cache {shlex.quote(str(cache))}", "--stages align,spatial,motion"):
        assert flag in command, (flag, command)
    with pytest.raises(Exception, match=re.escape(command)):   # train's reader says the same
        videos.select(cache, "affwild2", ["resnet50"])
    done = run_as_printed(command)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(store.done_videos(cache, "affwild2").video) == sorted([BROKEN, OTHER])


def test_a_cache_without_the_dataset_gets_the_plain_command_quoted(tmp_path):
    """Nothing recorded yet: the plain command (its flags are the user's to choose), with the folder quoted."""
    cache = tmp_path / "new cache"
    with pytest.raises(Exception) as e:
        store.done_videos(cache, "affwild2")
    assert e.value.hint == f"run `python cli.py features --dataset affwild2 --cache '{cache}'` first"


def test_a_motion_variant_the_cache_lacks_is_made_by_a_command_with_the_recorded_flags(made):
    """derive (robustness) asked for dphase@mw7+gamma0.2 in a cache without mw7: the command it printed to make mw7
    was typed by hand, without the recorded root, face source, crops folder and weights."""
    from pipeline.derive import derive

    layout, crops, cache = made
    with pytest.raises(Exception) as e:
        derive(cache, "affwild2", ["dphase_s0@mw7+gamma0.2", "dphase_s1@mw7+gamma0.2"], progress=False)
    assert "the cache holds no motion variant 'mw7'" in str(e.value)
    command = re.search(r"`(python cli\.py features [^`]*)`", e.value.hint).group(1)
    for flag in ("--stages align,motion --motion-variant mw7", f"--root {shlex.quote(str(layout.root))}",
                 f"--crops-dir {shlex.quote(str(crops))}", "--faces cropped_aligned", "--weights random"):
        assert flag in command, (flag, command)


def test_a_root_from_the_environment_is_repeated_as_root(made, tmp_path):
    """A run that read its root from $AFFWILD2_ROOT: the repair is pasted into a shell that may not set it, where it
    would read the manifest's default root (not there: the command fails), so the recorded root is given as --root."""
    from pipeline import label_files, rerun

    layout, _, made_cache = made
    cache = tmp_path / "cache"
    shutil.copytree(made_cache, cache)
    label_files.record_root(cache, "affwild2", layout.root, "$AFFWILD2_ROOT")   # as graph.py records such a run
    argv = rerun.flags(cache, "affwild2")
    assert argv[argv.index("--root") + 1] == str(layout.root.resolve())
    label_files.record_root(cache, "affwild2", layout.root, "default")   # the manifest's default: found again as is
    assert "--root" not in rerun.flags(cache, "affwild2")


def _command(cache: Path, out: Path) -> str:
    r = export(cache, out)
    assert r.exit_code == 1, r.output
    return re.search(r"`(python cli\.py features [^`]*)`", r.output).group(1)


def test_a_dataset_and_cache_copied_together_are_repaired_from_the_copy(made, tmp_path):
    """Root, crops folder and cache copied with `cp -r` to another place (a cluster's scratch), the originals still
    there: the command named the copy's root (found beside the cache) but the original's --crops-dir, so the repaired
    video's faces came from the other copy without a word (and, the original deleted, the command failed)."""
    layout, crops, made_cache = made
    here = tmp_path / "cluster copy"
    for folder in (layout.root, crops, made_cache):   # each at the same place relative to the others
        shutil.copytree(folder, here / folder.name)
    cache = here / made_cache.name
    break_group(cache, "group deleted")   # made anew: its faces read from the crops folder the command names
    argv = shlex.split(command := _command(cache, tmp_path / "a.h5"))
    assert argv[argv.index("--root") + 1] == str((here / layout.root.name).resolve()), command
    assert argv[argv.index("--crops-dir") + 1] == str((here / crops.name).resolve()), command
    done = run_as_printed(command)
    assert done.returncode == 0, done.stdout + done.stderr
    face = dict(store.open_video(cache, "affwild2", BROKEN).attrs)["face_source"]
    assert Path(face["path"]).parent == (here / crops.name).resolve(), face
    assert export(cache, tmp_path / "b.h5").exit_code == 0


def test_a_moved_cache_whose_recorded_root_is_gone_is_repaired_from_the_root_readers_use(tmp_path, monkeypatch):
    """Dataset and cache moved (`mv`) to unrelated places, the old paths gone, the root now from $AFFWILD2_ROOT:
    readers compared the labels with that root while the command repeated the recorded --root, and failed as pasted
    ("root ... does not exist"). Crops under the root (the manifest's cropped_aligned) follow the root."""
    for var in ("AFFWILD2_ROOT", "MIMAMO_MANIFEST", "MIMAMO_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    layout = build_affwild2_layout(tmp_path / "laptop" / "Aff-Wild2", specs=default_specs()[:1], openface=False)
    old_cache = tmp_path / "laptop" / "cache"
    r = CliRunner().invoke(main, ["features", "--dataset", "affwild2", "--root", str(layout.root), "--cache",
                                  str(old_cache), "--faces", "cropped_aligned", "--weights", "random", "--seed", "3",
                                  "--workers", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    root, cache = tmp_path / "data" / "Aff-Wild2 moved", tmp_path / "scratch" / "zarr cache"
    for old, new in ((layout.root, root), (old_cache, cache)):
        new.parent.mkdir(parents=True)
        shutil.move(old, new)
    monkeypatch.setenv("AFFWILD2_ROOT", str(root))   # how readers find it here; the pasted command is run without
    store.mark_stale(store.open_video(cache, "affwild2", OTHER, mode="r+"), ["dphase_s0"])
    argv = shlex.split(command := _command(cache, tmp_path / "a.h5"))
    assert argv[argv.index("--root") + 1] == str(root.resolve()), command
    assert "--crops-dir" not in argv, command   # the manifest's folder under that root
    done = run_as_printed(command)
    assert done.returncode == 0, done.stdout + done.stderr
    assert export(cache, tmp_path / "b.h5").exit_code == 0
