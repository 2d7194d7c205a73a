"""Video ids come from dataset files and become folders under the cache: a bad one fails that video alone and never
writes outside the cache. Two-person entries of Aff-Wild2 get their side from their names."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from synth_video import write_face_video

from features.errors import BadInputError
from pipeline import extract, graph, store
from pipeline.ids import id_problem
from pipeline.manifest import VideoEntry, get_dataset, list_videos, videos_from_files

BAD_IDS = ["../../x", "a/b", "a\\b", "", " ", ".hidden", "..", ".", "x\0y", "x" * 300, "\ufeff1-30-176x144",
           "1-30\u200b-176x144"]


@pytest.mark.parametrize("video", BAD_IDS)
def test_the_store_refuses_an_id_that_would_leave_the_dataset_folder(tmp_path, video):
    assert id_problem(video) is not None
    with pytest.raises(BadInputError, match="video id refused"):
        store.video_dir(tmp_path, "omg", video)
    with pytest.raises(BadInputError, match="video id refused"):
        store.staging_dir(tmp_path, "omg", video)


@pytest.mark.parametrize("video", ["1-30-1280x720", "video10_1_right", "abc__utterance_1", "x..y", "a b", "é"])
def test_plain_ids_are_folders_of_the_dataset(tmp_path, video):
    assert id_problem(video) is None
    assert store.video_dir(tmp_path, "omg", video) == tmp_path / "omg" / "videos" / video


def files_under(path: Path, skip: Path) -> set[str]:
    return {str(p) for p in path.rglob("*") if skip not in p.parents and p != skip}


def test_an_omg_id_with_dot_dot_fails_that_video_and_writes_nothing_outside_the_cache(tmp_path):
    top = tmp_path / "a"
    root, cache = top / "b" / "omg", top / "b" / "cache"
    (root / "videos" / "vidA").mkdir(parents=True)
    write_face_video(root / "videos" / "vidA" / "utterance_1.mp4", 12, size=(160, 120))
    # where `videos/../../../x/utterance_1.mp4` points: a real clip, so nothing but the id check stops it
    (top / "x").mkdir()
    write_face_video(top / "x" / "utterance_1.mp4", 12, size=(160, 120))
    rows = [["link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote"],
            ["l", "0", "1", "vidA", "utterance_1.mp4", "0.5", "0.1", "3"],
            ["l", "0", "1", "../../../x", "utterance_1.mp4", "0.2", "0.3", "3"],
            ["l", "0", "1", "vidA", "../utterance_1.mp4", "0.2", "0.3", "3"],
            ["l", "0", "1", "", "utterance_1.mp4", "0.2", "0.3", "3"]]
    with open(root / "omg_TrainVideos.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    before = files_under(tmp_path, cache)

    entries = list_videos(get_dataset("omg", root=root))
    # an entry made by other code than the listers: the stage graph fails it alone too (defence in depth)
    entries.append(VideoEntry("../../../y", top / "x" / "utterance_1.mp4", "train"))
    s = extract.Settings(stages=("align",), weights="random")
    summary = graph.run(entries, cache, "omg", s, workers=1, progress=False, echo=lambda *a: None)

    assert files_under(tmp_path, cache) == before   # nothing written (or removed) outside the cache
    by_id = {r["video"]: r for r in summary.rows}
    assert by_id["vidA__utterance_1"]["status"] == "done"
    failed = sorted(r["error"] for r in summary.failed)
    csv_path = root / "omg_TrainVideos.csv"
    assert failed == sorted([f"{csv_path}: line 3: column video: the id '../../../x' holds a path separator (fix the CSV)",
                             f"{csv_path}: line 4: column utterance: the id '../utterance_1.mp4' holds a path "
                             "separator (fix the CSV)",
                             f"{csv_path}: line 5: column video: the id is empty (fix the CSV)",
                             f"{top / 'x' / 'utterance_1.mp4'}: video id refused: the id '../../../y' holds a path "
                             "separator (a video id is a folder name in the cache)"])
    assert {p.name for p in cache.iterdir()} == {"omg"}
    assert {p.name for p in (cache / "omg" / "videos").iterdir()} == {"vidA__utterance_1"}
    idx = store.read_index(cache, "omg").set_index("video")
    assert idx.loc["vidA__utterance_1", "status"] == "done" and (idx.status == "failed").sum() == 4


def test_video_files_with_hidden_names_fail_alone(tmp_path):
    good, hidden = tmp_path / "clip.mp4", tmp_path / ".clip2.mp4"
    good.write_bytes(b"x")
    hidden.write_bytes(b"x")
    a, b = videos_from_files([good, hidden])
    assert a.video == "clip" and a.problem is None
    assert b.problem.startswith(f"{hidden}: its name cannot be a video id") and id_problem(b.video) is None


# ---- Aff-Wild2 names: two-person entries, missing videos, bad names ---------------------------------------------

def affwild2_root(tmp_path: Path, entries: dict[str, list[str]], videos: list[str]) -> Path:
    for folder, names in entries.items():
        d = tmp_path / "annotations" / "VA_Set" / folder
        d.mkdir(parents=True, exist_ok=True)
        for name in names:
            (d / f"{name}.txt").write_text("valence,arousal\n0.1,0.2\n")
    (tmp_path / "videos").mkdir()
    for v in videos:
        (tmp_path / "videos" / f"{v}.mp4").write_bytes(b"x")   # the lister does not open videos
    return tmp_path


def test_two_person_entries_get_their_side_from_their_names(tmp_path):
    root = affwild2_root(tmp_path, {"Train_Set": ["a", "a_right", "b_left", "b", "c", "c_left", "c_right", "e"],
                                    "Validation_Set": ["d_left", "d_right", "f", "e", "._g"]},
                         ["a", "b", "c", "d", "e", "g"])
    entries = list_videos(get_dataset("affwild2", root=root))
    side = {e.video: e.side for e in entries if e.problem is None}
    assert side == {"a": "left", "a_right": "right", "b": "right", "b_left": "left", "c_left": "left",
                    "c_right": "right", "d_left": "left", "d_right": "right", "e": "largest"}
    paths = {e.video: e.path for e in entries}
    assert paths["a"] == paths["a_right"] == root / "videos" / "a.mp4" and paths["d_left"] == paths["d_right"]
    problems = {e.video: e.problem for e in entries if e.problem}
    ann = root / "annotations" / "VA_Set"
    assert problems["c"].startswith(f"{ann / 'Train_Set' / 'c.txt'}: annotations c, c_left and c_right")
    assert problems["f"].startswith(f"{ann / 'Validation_Set' / 'f.txt'}: no video file for annotation 'f'")
    stand_ins = [v for v in problems if v.startswith("invalid-id_")]
    assert sorted(problems[v].split(":")[0] for v in stand_ins) == [
        str(ann / "Validation_Set" / "._g.txt"), str(ann / "Validation_Set" / "e.txt")]   # hidden; a second 'e'
    assert len(entries) == 13 and len({e.video for e in entries}) == 13

    no_video = {e.video: e for e in list_videos(get_dataset("affwild2", root=root), require_video=False)}
    assert no_video["f"].problem is None and no_video["f"].path is None   # organiser crops need no video


# ---- a name given twice, or with nothing behind it: the file and line that give it ---------------------------

OMG_HEAD = ["link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote"]


def test_a_repeated_omg_row_is_named_by_the_csv_and_both_lines(tmp_path):
    rows = [["l", "0", "1", "yA", "utterance_1.mp4", "0.5", "0.1", "3"],
            ["l", "0", "1", "yA", "utterance_2.mp4", "0.5", "0.1", "3"],
            ["l", "0", "1", "yA", "utterance_1.mp4", "0.5", "0.1", "3"]]   # line 4 repeats line 2
    for name, body in (("omg_TrainVideos.csv", rows), ("omg_ValidationVideos.csv", [rows[1]])):
        with open(tmp_path / name, "w", newline="") as fh:
            csv.writer(fh).writerows([OMG_HEAD, *body])
    entries = {e.video: e for e in list_videos(get_dataset("omg", root=tmp_path))}
    train_csv, val_csv = tmp_path / "omg_TrainVideos.csv", tmp_path / "omg_ValidationVideos.csv"
    assert entries["yA__utterance_1"].problem is None and entries["yA__utterance_2"].problem is None
    assert entries["invalid-id_omg_TrainVideos.csv_line4"].problem == (
        f"{train_csv}: line 4: a second entry with the id 'yA__utterance_1' (the first is on line 2) (an entry is "
        "named once: remove the repeated line, or correct its name)")
    assert entries["invalid-id_omg_ValidationVideos.csv_line2"].problem == (
        f"{val_csv}: line 2: a second entry with the id 'yA__utterance_2' (also from {train_csv} line 3) (ids must "
        "be unique across splits: rename one)")


@pytest.fixture
def with_test_list(tmp_path, monkeypatch):
    """An Aff-Wild2 root (annotated a, b; videos a, b, t) whose manifest reads test_set.txt."""
    root = affwild2_root(tmp_path / "root", {"Train_Set": ["a"], "Validation_Set": ["b"]}, ["a", "b", "t"])
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text((Path(__file__).resolve().parent.parent / "data_manifest.yaml").read_text()
                        .replace("# test_list:", "test_list:"))
    monkeypatch.setenv("MIMAMO_MANIFEST", str(manifest))
    return root


def test_a_test_list_line_naming_an_annotated_entry_is_named_by_its_line(with_test_list):
    root = with_test_list
    (root / "test_set.txt").write_text("t\nb\n")
    entries = {e.video: e for e in list_videos(get_dataset("affwild2", root=root))}
    assert entries["t"].split == "test" and entries["t"].problem is None
    assert entries["b"].split == "validation" and entries["b"].problem is None
    assert entries["invalid-id_test_set.txt_line2"].problem == (
        f"{root / 'test_set.txt'}: line 2: 'b' is an annotated entry "
        f"({root / 'annotations' / 'VA_Set' / 'Validation_Set' / 'b.txt'}), not one of the test set's (the test set's "
        "entries have no annotations: remove this line, or check that the manifest's test_list is the test set's list)")


def test_a_test_list_name_with_nothing_on_disk_is_named_by_its_line(with_test_list):
    """--faces cropped_aligned needs no video, so a test entry without one is listed; with no annotation file
    either, nothing can count its frames: the error names test_set.txt and the line, and what is missing."""
    root = with_test_list
    (root / "test_set.txt").write_text("t\nghost\nonly_crops\n")
    crops = root / "cropped_aligned"
    (crops / "only_crops").mkdir(parents=True)
    (crops / "only_crops" / "00001.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    entries = {e.video: e for e in list_videos(get_dataset("affwild2", root=root), require_video=False)}
    s = extract.Settings(stages=("align",), weights="random", faces="cropped_aligned", faces_dir=str(crops))
    cache = root.parent / "cache"
    errors = {v: extract.process_video(str(cache), "affwild2", entries[v], s)["error"] for v in ("ghost", "only_crops")}
    listed = root / "test_set.txt"
    assert errors["ghost"] == (
        f"{listed}: line 2: 'ghost': no video file, no annotation file and no crop folder (looked in "
        f"{crops / 'ghost'}): nothing on disk has this name (check the name against the videos and crop folders (a "
        "typo, or an entry of another release?); ABAW5 on ships two crop folders: give each with --crops-dir)")
    assert errors["only_crops"] == (
        f"{listed}: line 3: 'only_crops': no video file and no annotation file to count its frames (its crop folder "
        f"{crops / 'only_crops'} cannot: frames after the last face leave no file) (put the video beside the "
        "others, or give its annotation file)")
    assert not list(cache.glob("affwild2/videos/*"))   # nothing left of either
