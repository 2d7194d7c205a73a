"""features.video: chunked decode of real OpenCV-encoded files, and clear errors for bad ones."""
import warnings

import cv2
import numpy as np
import pytest
from synth_video import write_face_video

from features.errors import BadInputError
from features.video import TruncatedVideoWarning, iter_chunks, probe


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "face.avi"
    write_face_video(path, 50, size=(160, 120), fps=25.0, fourcc="MJPG")
    return path


def test_probe(video):
    info = probe(video)
    assert (info.width, info.height, info.n_frames) == (160, 120, 50)
    assert info.fps == pytest.approx(25.0)
    assert info.path == str(video)


def test_chunks_cover_every_frame_in_order(video):
    chunks = list(iter_chunks(video, chunk_size=16))
    assert [c.start for c in chunks] == [0, 16, 32, 48]
    assert [len(c.frames) for c in chunks] == [16, 16, 16, 2]
    assert [c.last for c in chunks] == [False, False, False, True]
    assert not any(c.truncated for c in chunks)
    times = np.concatenate([c.times for c in chunks])
    np.testing.assert_allclose(times, np.arange(50) / 25.0)
    assert chunks[0].frames.dtype == np.uint8 and chunks[0].frames.shape[1:] == (120, 160, 3)


def test_frames_are_rgb(tmp_path):
    path = tmp_path / "red.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.dstack([np.zeros((48, 64)), np.zeros((48, 64)), np.full((48, 64), 255)]).astype(np.uint8))
    writer.release()  # BGR (0, 0, 255) is red
    frames = next(iter_chunks(path)).frames
    assert frames[..., 0].mean() > 200 and frames[..., 2].mean() < 50


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "random"])
def test_bad_files_name_the_file(tmp_path, kind):
    path = tmp_path / ("clip.txt" if kind == "text" else "clip.mp4")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("arousal,valence\n0.1,0.2\n" * 50)
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    for call in (lambda: probe(path), lambda: list(iter_chunks(path))):
        with pytest.raises(BadInputError) as err:
            call()
        assert str(path) in str(err.value)


def test_truncated_video_keeps_its_frames(tmp_path, video):
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chunks = list(iter_chunks(cut, chunk_size=8))
    n = sum(len(c.frames) for c in chunks)
    assert 15 <= n < 50
    assert chunks[-1].last and chunks[-1].truncated
    assert any(issubclass(w.category, TruncatedVideoWarning) and str(cut) in str(w.message) for w in caught)
    # The frames kept are the file's first frames, decoded as from the whole file.
    whole = next(iter_chunks(video, chunk_size=8)).frames
    np.testing.assert_array_equal(chunks[0].frames, whole)


def test_mp4_cut_before_its_index_is_a_bad_input(tmp_path):
    # OpenCV writes mp4's index (moov) at the end: half a file has no decodable frame, and says so.
    path = tmp_path / "face.mp4"
    write_face_video(path, 30, size=(160, 120))
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="cut.mp4"):
        list(iter_chunks(cut))
