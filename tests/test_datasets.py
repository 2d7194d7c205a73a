"""`features` on Aff-Wild2 as it ships (tests/affwild2_layout.py): two-person entries, organiser crops, OpenFace CSVs,
label/frame slack, on a real Dask LocalCluster, real dlib, real Zarr.

The layout pairs a plain `5-30-480x240` (the left person, the astronaut) with `5-30-480x240_right` (Grace Hopper),
as real releases do for some two-person videos.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from affwild2_layout import build_affwild2_layout, default_specs
from openface_csv import write_openface_csv

from features.aligned_crops import iter_crop_folder
from features.errors import BadInputError
from features.face import AlignedFaces
from pipeline import extract, graph, info, store
from pipeline.manifest import get_dataset, list_videos

ROOT = Path(__file__).resolve().parent.parent
PAIR = "5-30-480x240"
ENTRIES = {"1-30-176x144", "video10_1", PAIR, f"{PAIR}_right", "2-24-176x144"}


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return build_affwild2_layout(tmp_path_factory.mktemp("affwild2"), default_specs(pair=("", "_right")))


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as c:
        yield c


def run(cluster, root, cache, only=None, require_video=True, **settings):
    entries = list_videos(get_dataset("affwild2", root=root), require_video=require_video)
    entries = [e for e in entries if only is None or e.video in only]
    s = extract.Settings(**{"stages": ("align", "motion"), "weights": "random", **settings})
    summary = graph.run(entries, cache, "affwild2", s, scheduler=cluster.scheduler_address, progress=False,
                        echo=lambda *a: None)
    return {r["video"]: r for r in summary.rows}, summary


def group(cache, video):
    return store.open_video(cache, "affwild2", video)


def landmark_error(lm: np.ndarray, entry, t: int) -> float:
    return float(np.linalg.norm(lm - entry.true_landmarks(t), axis=1).mean())


def copy_root(layout, dst: Path, videos: bool = True) -> Path:
    """A copy of the layout to damage (the module's layout stays intact)."""
    for part in ("annotations", "cropped_aligned", "openface") + (("videos",) if videos else ()):
        shutil.copytree(layout.root / part, dst / part)
    return dst


# ---- two-person videos -------------------------------------------------------------------------------------

def test_each_entry_of_a_two_person_video_follows_its_own_person(layout, cluster, tmp_path):
    rows, _ = run(cluster, layout.root, tmp_path, only={PAIR, f"{PAIR}_right"}, stages=("align",))
    assert all(r["status"] == "done" for r in rows.values()), rows
    left, right = layout.entries[PAIR], layout.entries[f"{PAIR}_right"]
    assert left.video_path == right.video_path   # one video file, two cache groups
    for entry, side in ((left, "left"), (right, "right")):
        g = group(tmp_path, entry.entry)
        assert g.attrs["face_source"]["side"] == side and g.attrs["source"] == str(entry.video_path)
        valid, lm = g["valid"][:], g["landmarks"][:]
        np.testing.assert_array_equal(valid, entry.present)   # invalid exactly while its own person is away
        errs = [landmark_error(lm[t], entry, t) for t in np.flatnonzero(valid)]
        assert np.median(errs) < 2.0 and max(errs) < 4.0, (side, np.median(errs), max(errs))
    # the same face settings (one fingerprint per array across a dataset, as the trainer requires)
    fps = [store.video_fingerprints(tmp_path, "affwild2", v) for v in (PAIR, f"{PAIR}_right")]
    for f in fps:
        f.pop("labels")   # label files differ per video by design
    assert fps[0] == fps[1] and set(fps[0]) == {"valid", "landmarks", "face48"}


# ---- organiser crops ---------------------------------------------------------------------------------------

def expected_crops(entry, n_frames):
    return AlignedFaces.concat(list(iter_crop_folder(entry.crop_dir, n_frames, slack=1)))


def test_crops_make_one_row_per_frame_and_label_slack_is_recorded(layout, cluster, tmp_path):
    strict, _ = run(cluster, layout.root, tmp_path / "strict", faces="cropped_aligned",
                    faces_dir=str(layout.crops_dir))
    assert strict["video10_1"]["status"] == "failed"   # its label file holds 61 lines for 60 frames
    assert "61 label lines but the video's container says 60 frames" in strict["video10_1"]["error"]
    assert all(strict[v]["status"] == "done" for v in ENTRIES - {"video10_1"})

    rows, summary = run(cluster, layout.root, tmp_path / "c", faces="cropped_aligned",
                        faces_dir=str(layout.crops_dir), label_slack=1)
    assert not summary.failed and set(rows) == ENTRIES
    idx = store.read_index(tmp_path / "c", "affwild2").set_index("video")
    for name, e in layout.entries.items():
        g = group(tmp_path / "c", name)
        assert g.attrs["n_frames"] == e.n_frames == idx.loc[name, "n_frames"]   # trailing frames without crops too
        np.testing.assert_array_equal(g["valid"][:], e.crops)
        assert np.isnan(g["landmarks"][:]).all()
        np.testing.assert_array_equal(g["face48"][:], expected_crops(e, e.n_frames).face48)
        assert g.attrs["face_source"]["path"] == str(e.crop_dir) and g.attrs["faces"] == "cropped_aligned"
        assert idx.loc[name, "faces"] == "cropped_aligned" and idx.loc[name, "n_valid"] == e.crops.sum()
        diff = 1 if name == "video10_1" else 0
        assert g.attrs["label_frame_diff"] == diff == idx.loc[name, "label_frame_diff"]
        labels = g["labels"][:]
        assert len(labels) == e.n_frames   # the extra line is cut at the end
        unannotated = (e.labels[:e.n_frames] == -5).any(1)
        np.testing.assert_allclose(labels[~unannotated], e.labels[:e.n_frames][~unannotated][:, ::-1], atol=5e-4)
        dphase = g["dphase_s0"][:]
        assert not dphase[~g["valid"][:]].any() and np.abs(dphase[e.crops]).sum() > 0


def test_crops_without_videos_count_frames_from_the_annotations(layout, cluster, tmp_path):
    root = copy_root(layout, tmp_path / "root", videos=False)
    shutil.rmtree(root / "cropped_aligned" / "2-24-176x144")
    rows, _ = run(cluster, root, tmp_path / "c", require_video=False, faces="cropped_aligned",
                  faces_dir=str(root / "cropped_aligned"), label_slack=1)
    failed = rows["2-24-176x144"]   # its crop folder is missing: that video fails, naming the folder
    assert failed["status"] == "failed" and str(root / "cropped_aligned" / "2-24-176x144") in failed["error"]
    assert "give each with --crops-dir" in failed["error"]   # ABAW5 on: the crops may be in a second folder
    assert not (tmp_path / "c" / "affwild2" / "videos" / "2-24-176x144").exists()
    for name in ENTRIES - {"2-24-176x144"}:
        e = layout.entries[name]
        g = group(tmp_path / "c", name)
        assert rows[name]["status"] == "done" and g.attrs["n_frames"] == len(e.labels)   # video10_1: 61
        assert g.attrs["label_frame_diff"] == 0 and g.attrs["source"] == str(root / "cropped_aligned" / name)
        np.testing.assert_array_equal(g["face48"][:], expected_crops(e, len(e.labels)).face48)

    # spatial added later, with no video anywhere: face224 is re-read from the crops (not kept in the cache)
    dphase_before = group(tmp_path / "c", "video10_1")["dphase_s0"][:]
    rows, _ = run(cluster, root, tmp_path / "c", only={"video10_1"}, require_video=False,
                  stages=("align", "motion", "spatial"), faces="cropped_aligned",
                  faces_dir=str(root / "cropped_aligned"), label_slack=1)
    assert rows["video10_1"]["action"] == "update" and rows["video10_1"]["status"] == "done"
    from pipeline.compute import get_encoder

    e = layout.entries["video10_1"]
    g = group(tmp_path / "c", "video10_1")
    crops = expected_crops(e, len(e.labels))
    feats = g["resnet50"][:]
    want = get_encoder(extract.Settings(weights="random")).encode(crops.face224[crops.valid])
    np.testing.assert_allclose(feats[crops.valid], want.astype(np.float16), rtol=2e-2, atol=2e-2)
    assert not feats[~crops.valid].any() and "face224" not in g
    np.testing.assert_array_equal(g["dphase_s0"][:], dphase_before)   # untouched by the update


def test_the_organisers_test_list_adds_unlabelled_test_entries(layout, cluster, tmp_path, monkeypatch):
    """ABAW's test set has no annotations: the manifest's test_list names its entries, extracted beside the others
    (same faces, same command) as the unlabelled split `test`, which training leaves aside."""
    from train.config import TrainConfig, used_arrays
    from train.videos import select

    root = copy_root(layout, tmp_path / "root")
    shutil.copyfile(root / "videos" / f"{PAIR}.mp4", root / "videos" / "8-30-480x240.mp4")   # a test video
    for side in ("", "_right"):
        shutil.copytree(root / "cropped_aligned" / f"{PAIR}{side}", root / "cropped_aligned" / f"8-30-480x240{side}")
    # saved on Windows: a byte-order mark and CRLF line ends
    (root / "test_set.txt").write_bytes("\ufeff8-30-480x240\r\n8-30-480x240_right.mp4  # file names are taken too"
                                        "\r\n\r\n../up\r\n".encode("utf-8"))
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text((ROOT / "data_manifest.yaml").read_text().replace("# test_list:", "test_list:"))
    monkeypatch.setenv("MIMAMO_MANIFEST", str(manifest))
    entries = {e.video: e for e in list_videos(get_dataset("affwild2", root=root))}
    test = {v: e for v, e in entries.items() if e.split == "test" and e.problem is None}
    assert set(test) == {"8-30-480x240", "8-30-480x240_right"}
    assert all(e.label_files == {} and e.path == root / "videos" / "8-30-480x240.mp4" for e in test.values())
    assert (test["8-30-480x240"].side, test["8-30-480x240_right"].side) == ("left", "right")   # paired as annotated
    bad = [e for e in entries.values() if e.problem and "test_set.txt" in e.problem]
    assert len(bad) == 1 and "line 4" in bad[0].problem   # a bad line fails alone, naming the file and line

    rows, _ = run(cluster, root, tmp_path / "c", only={PAIR, "8-30-480x240"}, faces="cropped_aligned",
                  faces_dir=str(root / "cropped_aligned"), label_slack=1)
    assert rows["8-30-480x240"]["status"] == "done" and rows["8-30-480x240"]["split"] == "test"
    index = store.read_index(tmp_path / "c", "affwild2").set_index("video").labelled   # train skips the unlabelled
    assert not index["8-30-480x240"] and index[PAIR]
    np.testing.assert_array_equal(group(tmp_path / "c", "8-30-480x240")["face48"][:],
                                  group(tmp_path / "c", PAIR)["face48"][:])   # the same crops, the same faces
    assert np.isnan(group(tmp_path / "c", "8-30-480x240")["labels"][:]).all()
    sel = select(tmp_path / "c", "affwild2", used_arrays(TrainConfig(cache="", streams="temporal")))
    assert [r["video"] for r in sel.rows] == [PAIR] and not sel.left_out   # unlabelled: not trained on, not refused


# ---- OpenFace CSVs -----------------------------------------------------------------------------------------

def test_openface_landmarks_are_aligned_as_usual(layout, cluster, tmp_path):
    root = copy_root(layout, tmp_path / "root")
    of = root / "openface"
    # the two-person video: one FaceLandmarkVidMulti CSV for the video file, rows and ids shuffled
    left, right = layout.entries[PAIR], layout.entries[f"{PAIR}_right"]
    write_openface_csv(of / f"{PAIR}.csv", [(e.csv_landmarks, np.isfinite(e.csv_landmarks[:, 0, 0]))
                                           for e in (left, right)], shuffle_ids=True, seed=1)
    (of / f"{PAIR}_right.csv").unlink()   # the right person reads the video's CSV too, by side
    (of / "2-24-176x144.csv").unlink()    # missing: that video fails, naming the file
    e = layout.entries["1-30-176x144"]
    write_openface_csv(of / "1-30-176x144.csv", [(e.csv_landmarks, np.isfinite(e.csv_landmarks[:, 0, 0]))],
                       n_frames=e.n_frames - 2)   # 2 frames short: fails unless within the slack
    rows, _ = run(cluster, root, tmp_path / "c", faces="openface", faces_dir=str(of), label_slack=1)
    assert rows["2-24-176x144"]["status"] == "failed" and str(of / "2-24-176x144.csv") in rows["2-24-176x144"]["error"]
    assert rows["1-30-176x144"]["status"] == "failed" and str(of / "1-30-176x144.csv") in rows["1-30-176x144"]["error"]
    for name in (PAIR, f"{PAIR}_right", "video10_1"):
        e = layout.entries[name]
        g = group(tmp_path / "c", name)
        assert rows[name]["status"] == "done" and g.attrs["faces"] == "openface"
        valid, lm = g["valid"][:], g["landmarks"][:]
        want = np.isfinite(e.csv_landmarks[:, 0, 0])
        np.testing.assert_array_equal(valid, want)
        np.testing.assert_allclose(lm[valid], e.csv_landmarks[valid], atol=0.051)   # the CSV's, one decimal
        assert not g["face48"][:][~valid].any() and g["face48"][:][valid].mean() > 40

    # per-person CSVs (FeatureExtraction: one face a frame) are that person's track, wherever they stand
    rows, _ = run(cluster, layout.root, tmp_path / "own", only={PAIR}, faces="openface",
                  faces_dir=str(layout.openface_dir))
    np.testing.assert_array_equal(group(tmp_path / "own", PAIR)["valid"][:], np.isfinite(left.csv_landmarks[:, 0, 0]))

    rows, _ = run(cluster, root, tmp_path / "c", only={"1-30-176x144"}, faces="openface", faces_dir=str(of),
                  label_slack=2)
    g = group(tmp_path / "c", "1-30-176x144")
    assert rows["1-30-176x144"]["status"] == "done" and g.attrs["faces_frame_diff"] == -2
    assert not g["valid"][-2:].any()
    idx = store.read_index(tmp_path / "c", "affwild2").set_index("video")
    assert idx.loc["1-30-176x144", "faces_frame_diff"] == -2


# ---- the source in the fingerprint -------------------------------------------------------------------------

def test_the_face_source_is_part_of_the_fingerprint(layout, cluster, tmp_path):
    one = {"1-30-176x144"}
    run(cluster, layout.root, tmp_path, only=one, faces="cropped_aligned", faces_dir=str(layout.crops_dir))
    crops_fp = store.video_fingerprints(tmp_path, "affwild2", "1-30-176x144")
    assert "cropped_aligned from" in info.describe(tmp_path)
    rows, _ = run(cluster, layout.root, tmp_path, only=one)   # the video path: rebuilt, never mixed
    assert rows["1-30-176x144"]["action"] == "full"
    assert "face source changed (cropped_aligned -> video)" in rows["1-30-176x144"]["reason"]
    video_fp = store.video_fingerprints(tmp_path, "affwild2", "1-30-176x144")
    assert set(crops_fp) == set(video_fp) and all(crops_fp[k] != video_fp[k] for k in crops_fp if k != "labels")
    assert "faces from: video (1 video)" in info.describe(tmp_path)
    rows, _ = run(cluster, layout.root, tmp_path, only=one)
    assert rows["1-30-176x144"]["action"] == "skip"

    # a changed crop folder is a changed input: rebuilt on the next crops run, as a changed video file is
    run(cluster, layout.root, tmp_path / "b", only=one, faces="cropped_aligned", faces_dir=str(layout.crops_dir))
    crop = layout.entries["1-30-176x144"].crop_dir / "00001.jpg"
    saved = crop.read_bytes()
    try:
        cv2.imwrite(str(crop), cv2.imread(str(crop)), [cv2.IMWRITE_JPEG_QUALITY, 50])
        rows, _ = run(cluster, layout.root, tmp_path / "b", only=one, faces="cropped_aligned",
                      faces_dir=str(layout.crops_dir))
    finally:
        crop.write_bytes(saved)
    assert rows["1-30-176x144"]["action"] == "full" and "changed" in rows["1-30-176x144"]["reason"]


def test_crops_in_two_folders_as_abaw5_ships_them(layout, cluster, tmp_path):
    """ABAW5 on ships the crops in cropped_aligned/ and cropped_aligned_new_50_vids/: each entry is read from the
    folder that has it, in the order given; one in neither fails naming every place looked in."""
    import os

    first, second, empty = tmp_path / "cropped_aligned", tmp_path / "cropped_aligned_new_50_vids", tmp_path / "none"
    for d in (first, second, empty):
        d.mkdir()
    (first / "1-30-176x144").symlink_to(layout.crops_dir / "1-30-176x144")
    (second / "video10_1").symlink_to(layout.crops_dir / "video10_1")
    both = {"1-30-176x144", "video10_1"}
    rows, _ = run(cluster, layout.root, tmp_path / "c", only=both, faces="cropped_aligned",
                  faces_dir=os.pathsep.join(map(str, (first, second))), label_slack=1)
    assert {v: r["status"] for v, r in rows.items()} == {"1-30-176x144": "done", "video10_1": "done"}
    assert group(tmp_path / "c", "video10_1").attrs["face_source"]["path"] == str(second / "video10_1")
    assert group(tmp_path / "c", "1-30-176x144").attrs["face_source"]["path"] == str(first / "1-30-176x144")
    rows, _ = run(cluster, layout.root, tmp_path / "d", only={"video10_1"}, faces="cropped_aligned",
                  faces_dir=os.pathsep.join(map(str, (first, empty))), label_slack=1)
    assert rows["video10_1"]["status"] == "failed"
    assert f"{first / 'video10_1'}: folder of aligned faces not found here nor in {empty / 'video10_1'}" in \
        rows["video10_1"]["error"]


def test_the_command_line_takes_the_flags(layout, tmp_path):
    cmd = [sys.executable, str(ROOT / "cli.py"), "features", "--dataset", "affwild2", "--root", str(layout.root),
           "--cache", str(tmp_path), "--stages", "align,motion", "--workers", "1", "--no-progress",
           "--faces", "cropped_aligned", "--crops-dir", str(layout.crops_dir)]
    out = subprocess.run(cmd + ["--label-slack", "1"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "failed: 0" in out.stdout and "5 new" in out.stdout
    idx = store.read_index(tmp_path, "affwild2").set_index("video")
    assert idx.loc["video10_1", "label_frame_diff"] == 1 and set(idx.faces) == {"cropped_aligned"}
    bad = subprocess.run(cmd[:-4] + ["--crops-dir", str(layout.crops_dir)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--crops-dir given, but faces come from 'video'" in bad.stderr
    # a run that leaves out --faces (a repair hint, a new variant's run) does not rebuild the crops' videos from
    # the video files, the manifest's default: it is refused, and nothing changes
    before = store.read_index(tmp_path, "affwild2").fingerprints.tolist()
    bare = subprocess.run(cmd[:-4] + ["--label-slack", "1"], capture_output=True, text=True, cwd=ROOT)
    assert bare.returncode == 2 and "5 done videos' faces come from cropped_aligned (5 videos)" in bare.stderr
    assert "pass --faces cropped_aligned" in bare.stderr
    assert store.read_index(tmp_path, "affwild2").fingerprints.tolist() == before


def test_a_dataset_takes_its_face_source_from_the_manifest_unless_a_flag_says(tmp_path):
    from pipeline.features_cmd import resolve_faces
    from pipeline.manifest import Dataset

    (tmp_path / "crops").mkdir()
    (tmp_path / "elsewhere").mkdir()
    ds = Dataset("affwild2", "affwild2", tmp_path, 30.0, {"faces": "cropped_aligned", "crops": "crops"})
    assert resolve_faces(ds, None, None, None) == ("cropped_aligned", str(tmp_path / "crops"))
    assert resolve_faces(ds, None, tmp_path / "elsewhere", None) == ("cropped_aligned", str(tmp_path / "elsewhere"))
    assert resolve_faces(ds, "video", None, None) == ("video", None)
    import os  # --crops-dir repeated, or a list in the manifest: several folders, in order
    assert resolve_faces(ds, None, (tmp_path / "elsewhere", tmp_path / "crops"), None) == \
        ("cropped_aligned", os.pathsep.join([str(tmp_path / "elsewhere"), str(tmp_path / "crops")]))
    two = Dataset("affwild2", "affwild2", tmp_path, 30.0, {"faces": "cropped_aligned", "crops": ["crops", "elsewhere"]})
    assert resolve_faces(two, None, (), None) == \
        ("cropped_aligned", os.pathsep.join([str(tmp_path / "crops"), str(tmp_path / "elsewhere")]))
    with pytest.raises(BadInputError, match="openface_dir"):
        resolve_faces(ds, "openface", None, None)   # no folder for it in the manifest, none given
    with pytest.raises(BadInputError, match="crops-dir folder does not exist"):
        resolve_faces(Dataset("x", "affwild2", tmp_path, 30.0, {"faces": "cropped_aligned", "crops": "gone"}),
                      None, None, None)
