"""The datasets' files under the names their organisers released them with, and a split that is not there said.

OMG: the test set's CSV came without labels for the challenge (`omg_TestVideos_WithoutLabels.csv`:
link,start,end,video,utterance) and with them after it (`omg_TestVideos_WithLabels.csv`); the manifest reads the first
present. Aff-Wild2: the 1st and 2nd ABAW named the training annotations `Training_Set`, the 3rd on `Train_Set`."""
import csv

import pytest

from features.errors import BadInputError
from pipeline.manifest import get_dataset, list_videos, load_manifest

HEAD = ["link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote"]


def _csv(path, head, rows):
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([head, *rows])


def test_the_released_test_csvs_are_read_labelled_or_not_and_an_absent_split_is_said(tmp_path):
    _csv(tmp_path / "omg_TrainVideos.csv", HEAD, [["l", "0", "1", "a1", "utterance_1.mp4", "0.5", "0.1", "3"]])
    _csv(tmp_path / "omg_TestVideos_WithoutLabels.csv", HEAD[:5], [["l", "0", "1", "t1", "utterance_1.mp4"],
                                                                   ["l", "1", "2", "t1", "utterance_2.mp4"]])
    notes = []
    entries = {e.video: e for e in list_videos(get_dataset("omg", root=tmp_path), echo=notes.append)}
    assert sorted(entries) == ["a1__utterance_1", "t1__utterance_1", "t1__utterance_2"]
    test = entries["t1__utterance_2"]
    assert (test.split, test.video_labels, test.problem) == ("test", None, None)
    assert test.path == tmp_path / "videos" / "t1" / "utterance_2.mp4"
    assert not test.is_labelled() and entries["a1__utterance_1"].is_labelled()
    assert notes == [f"note: omg: no validation split (omg_ValidationVideos.csv not found under {tmp_path})"]

    # the labelled release, once there, is read instead: the test split is then held out and scored
    _csv(tmp_path / "omg_TestVideos_WithLabels.csv", HEAD, [["l", "0", "1", "t1", "utterance_1.mp4", "0.2", "0.3", "1"]])
    notes = []
    entries = {e.video: e for e in list_videos(get_dataset("omg", root=tmp_path), echo=notes.append)}
    assert entries["t1__utterance_1"].video_labels == {"arousal": 0.2, "valence": 0.3}
    assert entries["t1__utterance_1"].label_table == tmp_path / "omg_TestVideos_WithLabels.csv"
    # a clip the labelled release has no row for stays an unlabelled entry (for `predict`), and is said: it was
    # dropped without a word, and the test split scored without it (tests/test_omg_labels.py)
    assert not entries["t1__utterance_2"].is_labelled() and entries["t1__utterance_2"].split == "test"
    assert "1 clip of omg_TestVideos_WithoutLabels.csv has no row in omg_TestVideos_WithLabels.csv" in notes[-1]

    # labels under another spelling are an error naming the file, not a silently unlabelled split
    _csv(tmp_path / "omg_TestVideos_WithLabels.csv", ["link", "start", "end", "video", "utterance", "Arousal",
                                                      "Valence"], [["l", "0", "1", "t1", "utterance_1.mp4", "1", "0"]])
    with pytest.raises(BadInputError, match="omg_TestVideos_WithLabels.csv: line 1: missing columns"):
        list_videos(get_dataset("omg", root=tmp_path))


def test_clips_in_one_folder_per_split_as_the_released_code_kept_them(tmp_path):
    """`videos:` may map splits to folders (Train/, Test/); only the omg layout takes such a mapping."""
    _csv(tmp_path / "omg_TrainVideos.csv", HEAD, [["l", "0", "1", "a1", "utterance_1.mp4", "0.5", "0.1", "3"]])
    _csv(tmp_path / "omg_TestVideos_WithoutLabels.csv", HEAD[:5], [["l", "0", "1", "t1", "utterance_1.mp4"]])
    spec = ("  omg: {layout: omg, root_env: X_OMG_ROOT, videos: {train: Train, test: Test}, fps: 25,\n"
            "        csv: {train: omg_TrainVideos.csv, test: [omg_TestVideos_WithoutLabels.csv]}}\n")
    (tmp_path / "m.yaml").write_text("datasets:\n" + spec)
    entries = {e.video: e for e in list_videos(get_dataset("omg", tmp_path, load_manifest(tmp_path / "m.yaml")))}
    assert entries["a1__utterance_1"].path == tmp_path / "Train" / "a1" / "utterance_1.mp4"
    assert entries["t1__utterance_1"].path == tmp_path / "Test" / "t1" / "utterance_1.mp4"
    (tmp_path / "m.yaml").write_text("datasets:\n" + spec.replace("layout: omg", "layout: affwild2"))
    with pytest.raises(BadInputError, match="manifest entry 'omg': videos: a mapping of splits to folders is for "
                                            "the omg layout"):
        load_manifest(tmp_path / "m.yaml")


def test_affwild2_training_annotations_under_either_release_name(tmp_path):
    ann = tmp_path / "annotations" / "VA_Set"
    for folder, entry in (("Training_Set", "10-60-1280x720"), ("Validation_Set", "11-24-1920x1080")):
        (ann / folder).mkdir(parents=True)
        (ann / folder / f"{entry}.txt").write_text("valence,arousal\n0.1,0.2\n")
    notes = []
    entries = list_videos(get_dataset("affwild2", root=tmp_path), require_video=False, echo=notes.append)
    assert [(e.video, e.split) for e in entries] == [("10-60-1280x720", "train"), ("11-24-1920x1080", "validation")]
    assert notes == []
    (ann / "Validation_Set" / "11-24-1920x1080.txt").unlink()
    (ann / "Validation_Set").rmdir()
    list_videos(get_dataset("affwild2", root=tmp_path), require_video=False, echo=notes.append)
    assert notes == [f"note: affwild2: no validation split (Validation_Set not found under {ann})"]


def test_affwild2_annotations_of_a_later_abaw_are_pointed_to(tmp_path):
    """From the 3rd ABAW the VA annotations ship as <N>th_ABAW_Annotations/VA_Estimation_Challenge: the default
    folder is then absent, and the note says where they are and what to set."""
    ann = tmp_path / "6th_ABAW_Annotations" / "VA_Estimation_Challenge" / "Train_Set"
    ann.mkdir(parents=True)
    (ann / "1-30-1280x720.txt").write_text("valence,arousal\n0.1,0.2\n")
    notes = []
    with pytest.raises(BadInputError, match="no videos found"):
        list_videos(get_dataset("affwild2", root=tmp_path), require_video=False, echo=notes.append)
    assert notes[0] == (f"note: affwild2: no train split (Train_Set or Training_Set not found under "
                        f"{tmp_path / 'annotations' / 'VA_Set'}); the 3rd ABAW on put them in 6th_ABAW_Annotations/"
                        "VA_Estimation_Challenge: set `annotations: 6th_ABAW_Annotations/VA_Estimation_Challenge` "
                        "under affwild2 in the manifest")


def test_a_labelled_entry_that_fails_when_listed_is_still_labelled(tmp_path):
    """A bad line of a labelled CSV, an annotation file with a bad name, a video with half its label files: each
    fails alone, and each counts as labelled (the index's `labelled`), so training stops on it rather than going
    on without it as if it were an unlabelled test entry; a bad line of the unlabelled test CSV does not."""
    omg = tmp_path / "omg"
    omg.mkdir()
    _csv(omg / "omg_TrainVideos.csv", HEAD, [["l", "0", "1", "a1", "utterance_1.mp4", "x", "0.1", "3"],
                                             ["l", "0", "1", "../a2", "utterance_1.mp4", "0.5", "0.1", "3"]])
    _csv(omg / "omg_TestVideos_WithoutLabels.csv", HEAD[:5], [["l", "0", "1", "../t1", "utterance_1.mp4"]])
    failed = {(e.split, e.problem.split(": ", 2)[1]): e.is_labelled()
              for e in list_videos(get_dataset("omg", root=omg)) if e.problem}
    assert failed == {("train", "line 2"): True, ("train", "line 3"): True, ("test", "line 2"): False}

    aw2 = tmp_path / "aw2" / "annotations" / "VA_Set" / "Train_Set"
    aw2.mkdir(parents=True)
    (aw2 / ".hidden.txt").write_text("valence,arousal\n0.1,0.2\n")
    [entry] = list_videos(get_dataset("affwild2", root=tmp_path / "aw2"), require_video=False)
    assert entry.problem and entry.is_labelled()

    aw = tmp_path / "aw"
    (aw / "videos" / "train").mkdir(parents=True)
    (aw / "videos" / "train" / "v1.mp4").write_bytes(b"")
    (aw / "annotations" / "train" / "arousal").mkdir(parents=True)
    (aw / "annotations" / "train" / "arousal" / "v1.txt").write_text("0.1\n")
    [entry] = list_videos(get_dataset("affwild", root=aw))
    assert "label file not found, but its pair exists" in entry.problem and entry.is_labelled()
