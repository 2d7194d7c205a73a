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
