"""Faces users already have: Aff-Wild2's organiser crops and OpenFace 2 CSVs, on a small dataset in the real layout."""
import shutil

import cv2
import numpy as np
import pytest
from affwild2_layout import build_affwild2_layout
from openface_csv import write_openface_csv

from features.aligned_crops import iter_crop_folder, scan_crop_folder
from features.errors import BadInputError
from features.face import AlignedFaces, align_faces
from features.openface import OpenFaceLandmarks, read_openface_csv
from features.video import iter_chunks


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return build_affwild2_layout(tmp_path_factory.mktemp("affwild2"))


def crops_of(folder, n_frames, chunk_size=16, **kw):
    return AlignedFaces.concat(list(iter_crop_folder(folder, n_frames, chunk_size=chunk_size, **kw)))


def expected_face48(path):
    """What the video path does to a 224 warp, done to the crop: OpenCV's RGB->gray, then area to 48x48."""
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (48, 48), interpolation=cv2.INTER_AREA)


# ---- organiser crops ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ["1-30-176x144", "5-30-480x240_left", "5-30-480x240_right", "2-24-176x144"])
def test_crops_one_row_per_frame_numbered_from_one(layout, entry):
    e = layout.entries[entry]
    out = crops_of(e.crop_dir, e.n_frames)
    assert len(out) == e.n_frames  # trailing frames without a crop (2-24-176x144) are rows too
    np.testing.assert_array_equal(out.valid, e.crops)
    for t in np.flatnonzero(e.crops):  # row t is file t + 1
        np.testing.assert_array_equal(out.face48[t], expected_face48(e.crop_dir / f"{t + 1:05d}.jpg"))
    assert not out.face48[~out.valid].any() and not out.face224[~out.valid].any()
    assert np.isnan(out.landmarks).all() and out.face224.shape[1:] == (224, 224, 3)
    assert (out.face224[out.valid].reshape(-1, 224 * 224 * 3).mean(1) > 40).all()


def test_two_person_folders_are_one_person_each(layout):
    left, right = (layout.entries[f"5-30-480x240_{s}"] for s in ("left", "right"))
    away = ~left.present & right.crops
    assert away.sum() > 10
    a, b = crops_of(left.crop_dir, left.n_frames), crops_of(right.crop_dir, right.n_frames)
    assert not a.valid[away].any() and b.valid[away].all()
    both = a.valid & b.valid
    assert np.abs(a.face48[both].astype(int) - b.face48[both]).mean() > 20  # two different faces


def test_trailing_frames_need_the_count_from_outside(layout):
    e = layout.entries["2-24-176x144"]
    assert scan_crop_folder(e.crop_dir).last_frame < e.n_frames  # the folder alone undercounts
    assert len(crops_of(e.crop_dir, e.n_frames)) == e.n_frames


def test_crops_past_the_frame_count_are_an_error_unless_within_slack(layout):
    e = layout.entries["1-30-176x144"]
    last = scan_crop_folder(e.crop_dir).last_frame
    with pytest.raises(BadInputError, match=f"crop of frame {last} but the video has {last - 2} frames"):
        crops_of(e.crop_dir, last - 2)
    assert len(crops_of(e.crop_dir, last - 2, slack=2)) == last - 2


def test_noise_files_are_ignored(layout, tmp_path):
    e = layout.entries["1-30-176x144"]
    folder = tmp_path / e.entry
    shutil.copytree(e.crop_dir, folder)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "._00001.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    (folder / "00003.jpg.part").write_bytes(b"partial")
    (folder / "notes.txt").write_text("frames 21-27 have no face\n")
    (folder / "00099").mkdir()
    clean, noisy = crops_of(e.crop_dir, e.n_frames), crops_of(folder, e.n_frames)
    np.testing.assert_array_equal(noisy.valid, clean.valid)
    np.testing.assert_array_equal(noisy.face48, clean.face48)


def test_two_images_for_one_frame_are_an_error(layout, tmp_path):
    folder = tmp_path / "dup"
    shutil.copytree(layout.entries["1-30-176x144"].crop_dir, folder)
    cv2.imwrite(str(folder / "00003.png"), cv2.imread(str(folder / "00003.jpg")))
    with pytest.raises(BadInputError, match="frame 3 has two images"):
        scan_crop_folder(folder)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_crop_is_named_and_earlier_chunks_are_kept(layout, tmp_path, damage):
    e = layout.entries["1-30-176x144"]
    folder = tmp_path / e.entry
    shutil.copytree(e.crop_dir, folder)
    bad = folder / "00040.jpg"
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[:len(data) // 2], "garbage": b"not a jpeg" * 50, "empty": b""}[damage])
    got = []
    with pytest.raises(BadInputError) as err:
        for chunk in iter_crop_folder(folder, e.n_frames, chunk_size=16):
            got.append(chunk)
    assert str(bad) in str(err.value)
    assert {"truncated": "JPEG is truncated", "garbage": "not a JPEG image (it starts with b'not a jp')",
            "empty": "image file is empty"}[damage] in str(err.value)
    assert sum(len(c) for c in got) == 32  # frames 0..31 were handed out before the chunk holding frame 39


def test_a_folder_numbered_from_zero_is_an_error_naming_it(layout, tmp_path):
    """00000.jpg ...: a 0-based folder, not the organisers' 1-based numbering; read as it is, every crop would be
    one frame off against the video and its labels, so it is refused, naming the folder."""
    e = layout.entries["1-30-176x144"]
    folder = tmp_path / e.entry
    folder.mkdir()
    for src in sorted(e.crop_dir.glob("*.jpg")):
        shutil.copyfile(src, folder / f"{int(src.stem) - 1:05d}.jpg")
    with pytest.raises(BadInputError, match="numbered 0, but the organisers number crops from 1") as err:
        scan_crop_folder(folder)
    assert str(err.value).startswith(f"{folder}: 00000.jpg")
    with pytest.raises(BadInputError, match="00000.jpg is numbered 0"):
        crops_of(folder, e.n_frames)


def test_missing_or_empty_folder_says_so(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        scan_crop_folder(tmp_path / "absent")
    with pytest.raises(BadInputError, match="no numbered images"):
        scan_crop_folder(tmp_path)


# ---- OpenFace 2 CSVs ---------------------------------------------------------------------------------------

def stream(source, video, chunk_size=16):
    return AlignedFaces.concat([source.process(c.frames) for c in iter_chunks(video, chunk_size)])


@pytest.mark.parametrize("version", ["2.0", "2.2"])
def test_openface_landmarks_stream_with_the_video(layout, tmp_path, version):
    e = layout.entries["1-30-176x144"]  # the astronaut, absent for frames 20..26: OpenFace rows with success 0
    csv_path = e.openface_csv
    if version == "2.2":
        csv_path = tmp_path / "v22.csv"
        write_openface_csv(csv_path, [(e.csv_landmarks, np.isfinite(e.csv_landmarks[:, 0, 0]))], version="2.2")
    source = OpenFaceLandmarks(csv_path)
    out = stream(source, e.video_path)
    assert source.finish() == 0
    valid = np.isfinite(e.csv_landmarks[:, 0, 0])
    np.testing.assert_array_equal(out.valid, valid)
    np.testing.assert_array_equal(out.valid, e.present)
    np.testing.assert_allclose(out.landmarks[valid], e.csv_landmarks[valid], atol=0.051)  # one decimal in the CSV
    errs = [np.linalg.norm(out.landmarks[t] - e.true_landmarks(t), axis=1).mean() for t in np.flatnonzero(valid)]
    assert np.median(errs) < 1.5
    frames = np.concatenate([c.frames for c in iter_chunks(e.video_path)])
    direct = align_faces(frames, e.csv_landmarks, valid)  # dlib's landmarks unrounded: what the video path aligns
    assert np.abs(out.face48[valid].astype(int) - direct.face48[valid]).max() <= 3
    assert not out.face48[~valid].any()


def test_openface_csv_shorter_than_the_video(layout, tmp_path):
    e = layout.entries["video10_1"]
    csv_path = tmp_path / "short.csv"
    write_openface_csv(csv_path, [(e.csv_landmarks, np.isfinite(e.csv_landmarks[:, 0, 0]))], n_frames=e.n_frames - 3)
    with pytest.raises(BadInputError, match=f"ends at frame {e.n_frames - 3} but the video goes on") as err:
        stream(OpenFaceLandmarks(csv_path), e.video_path)
    assert str(csv_path) in str(err.value)
    source = OpenFaceLandmarks(csv_path, slack=3)
    out = stream(source, e.video_path)
    assert len(out) == e.n_frames and not out.valid[-3:].any() and out.valid[:-3].all()
    assert source.finish() == -3


def test_openface_csv_longer_than_the_video(layout, tmp_path):
    e = layout.entries["video10_1"]
    csv_path = tmp_path / "long.csv"
    write_openface_csv(csv_path, [(e.csv_landmarks, np.isfinite(e.csv_landmarks[:, 0, 0]))], n_frames=e.n_frames + 2)
    source = OpenFaceLandmarks(csv_path)
    stream(source, e.video_path)
    with pytest.raises(BadInputError, match=f"rows up to frame {e.n_frames + 2} but the video has {e.n_frames}"):
        source.finish()
    source = OpenFaceLandmarks(csv_path, slack=2)
    stream(source, e.video_path)
    assert source.finish() == 2


@pytest.mark.parametrize("side", ["left", "right"])
def test_multi_face_csv_follows_one_side(layout, tmp_path, side):
    """FaceLandmarkVidMulti: rows only for found faces, ids and row order shuffled; each side keeps its person."""
    left, right = layout.entries["5-30-480x240_left"], layout.entries["5-30-480x240_right"]
    faces = [(e.csv_landmarks, np.isfinite(e.csv_landmarks[:, 0, 0])) for e in (left, right)]
    csv_path = tmp_path / "multi.csv"
    write_openface_csv(csv_path, faces, shuffle_ids=True, seed=3)
    want = left if side == "left" else right
    source = OpenFaceLandmarks(csv_path, side=side)
    out = stream(source, want.video_path)
    assert source.finish() == 0
    np.testing.assert_array_equal(out.valid, want.present)
    np.testing.assert_allclose(out.landmarks[out.valid], want.csv_landmarks[out.valid], atol=0.051)


def test_read_whole_csv_keeps_the_most_confident_successful_face(layout):
    e = layout.entries["2-24-176x144"]
    landmarks, valid = read_openface_csv(e.openface_csv)
    np.testing.assert_array_equal(valid, e.present)
    np.testing.assert_allclose(landmarks[valid], e.csv_landmarks[valid], atol=0.051)
    assert np.isnan(landmarks[~valid]).all()


def test_malformed_openface_csv_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    write_openface_csv(path, [(np.ones((3, 68, 2)) * 50, np.ones(3, bool))])
    lines = path.read_text().splitlines()
    good = list(lines)
    lines[2] = lines[2].replace("50.0", "abc", 1)
    path.write_text("\n".join(lines))
    with pytest.raises(BadInputError) as err:
        read_openface_csv(path)
    assert str(path) in str(err.value) and "line 3" in str(err.value)
    path.write_text("\n".join([good[0], good[2], good[1]]))  # frame 2 before frame 1
    with pytest.raises(BadInputError, match="line 3: frame 1 after frame 2"):
        read_openface_csv(path)
    path.write_text("\n".join([good[0], "0" + good[1][1:]]))
    with pytest.raises(BadInputError, match="numbers frames from 1"):
        read_openface_csv(path)
    path.write_text("frame, success, x_0\n1, 1, 3\n")
    with pytest.raises(BadInputError, match="line 1"):
        OpenFaceLandmarks(path)
