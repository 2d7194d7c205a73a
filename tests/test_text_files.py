"""Dataset text files saved on Windows (a UTF-8 byte-order mark, CRLF line ends) read as the same values as plain
ones: label files, the OMG CSV and the OpenFace CSV are real files on disk, parsed by the readers `features` uses."""
import numpy as np
import pytest
from openface_csv import write_openface_csv

from features.errors import BadInputError
from features.openface import iter_openface_frames
from pipeline.manifest import _read_csv_rows, read_affwild2_file, read_value_file


def _both(tmp_path, name, text):
    """The same text saved plainly and as Windows tools save it."""
    plain, windows = tmp_path / f"plain_{name}", tmp_path / f"windows_{name}"
    plain.write_text(text)
    windows.write_bytes(("\ufeff" + text.replace("\n", "\r\n")).encode("utf-8"))
    return plain, windows


def test_label_files_with_a_byte_order_mark_read_as_plain_ones(tmp_path):
    plain, windows = _both(tmp_path, "a.txt", "0.25\n-0.5\n0.125\n")
    np.testing.assert_array_equal(read_value_file(windows), read_value_file(plain))
    assert read_value_file(windows).tolist() == [0.25, -0.5, 0.125]
    plain, windows = _both(tmp_path, "va.txt", "valence,arousal\n0.5,-0.25\n-5,-5\n")
    np.testing.assert_array_equal(read_affwild2_file(windows), read_affwild2_file(plain))
    assert read_affwild2_file(windows)[0].tolist() == [-0.25, 0.5]


def test_csv_headers_with_a_byte_order_mark_keep_their_first_column(tmp_path):
    # the OMG columns with `video` first, as a re-saved spreadsheet may order them
    plain, windows = _both(tmp_path, "omg.csv", "video,utterance,arousal,valence\nv1,u1.mp4,0.5,0.25\n")
    rows = [row for _, row in _read_csv_rows(windows, ("video", "utterance", "arousal", "valence"))]
    assert rows == [row for _, row in _read_csv_rows(plain, ("video", "utterance", "arousal", "valence"))]
    assert rows[0]["video"] == "v1"


def test_an_openface_csv_with_a_byte_order_mark_is_read(tmp_path):
    lm = np.random.default_rng(0).uniform(10, 100, (3, 68, 2))
    write_openface_csv(tmp_path / "of.csv", [(lm, np.ones(3, bool))])
    windows = tmp_path / "of_windows.csv"
    windows.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "of.csv").read_bytes())
    got = [(f, [r.landmarks.tolist() for r in rows]) for f, rows in iter_openface_frames(windows)]
    assert got == [(f, [r.landmarks.tolist() for r in rows]) for f, rows in iter_openface_frames(tmp_path / "of.csv")]
    assert len(got) == 3


def test_a_blank_line_before_the_last_value_is_an_error_naming_the_file_and_line(tmp_path):
    """Line i is frame i: a blank (or blanked) line mid-file was skipped, shifting every later label by a frame, and
    --label-slack accepted the count it left. Trailing blank lines stay fine."""
    va = tmp_path / "va.txt"
    va.write_text("valence,arousal\n0.1,0.2\n\n0.3,0.4\n")
    with pytest.raises(BadInputError, match=rf"{va}: line 3: blank line before the value on line 4"):
        read_affwild2_file(va)
    va.write_text("valence,arousal\n0.1,0.2\n-5,-5\n0.3,0.4\n\n  \n")   # trailing blank lines are fine
    got = read_affwild2_file(va)
    assert got.shape == (3, 2) and np.isnan(got[1]).all()
    np.testing.assert_allclose(got[[0, 2]], [[0.2, 0.1], [0.4, 0.3]])
    one = tmp_path / "arousal.txt"
    one.write_text("0.1\n \n0.3\n")
    with pytest.raises(BadInputError, match=rf"{one}: line 2: blank line before the value on line 3"):
        read_value_file(one)
    one.write_text("0.1\n0.3\n\n")
    assert read_value_file(one).tolist() == pytest.approx([0.1, 0.3])


def test_a_label_file_saved_as_utf16_names_itself_and_what_to_do(tmp_path):
    """A label file saved as "Unicode" by a Windows tool (UTF-16) failed its video with "<video>: UnicodeDecodeError:
    'utf-8' codec can't decode byte 0xff": the video was named, not the label file, and nothing said what to do; an
    OMG CSV so saved stopped `features` with a traceback."""
    for name, text, read in (("va.txt", "valence,arousal\n0.5,-0.25\n", read_affwild2_file),
                             ("arousal.txt", "0.25\n-0.5\n", read_value_file)):
        path = tmp_path / name
        path.write_text(text.replace("\n", "\r\n"), encoding="utf-16")   # as Notepad's "Unicode" saves it
        with pytest.raises(BadInputError, match=rf"^{path}: not UTF-8 text \(byte 0 is b'\\xff'\); it starts with a "
                                                r"UTF-16 byte-order mark .* \(save it as UTF-8 text\)$"):
            read(path)
    omg = tmp_path / "omg_TrainVideos.csv"              # OMG's table: the lister stopped with a traceback
    omg.write_text("video,utterance,arousal,valence\r\nv1,u1.mp4,0.5,0.25\r\n", encoding="utf-16")
    with pytest.raises(BadInputError, match=rf"^{omg}: not UTF-8 text .* UTF-16 byte-order mark"):
        list(_read_csv_rows(omg, ("video", "utterance")))
    latin = tmp_path / "latin.txt"                      # not UTF-8 for another reason: the byte is named
    latin.write_bytes("0.25\n0.5\xb0\n".encode("latin-1"))
    with pytest.raises(BadInputError, match=rf"^{latin}: not UTF-8 text \(byte 8 is b'\\xb0'\) \(save it as UTF-8"):
        read_value_file(latin)


def test_a_va_line_of_three_values_is_an_error_naming_the_file_and_line(tmp_path):
    """'0,0.5,0.3' (a frame number before the pair, under the file's valence,arousal header) was read as valence 0,
    arousal 0.5: the first two values were taken and the third passed over. A trailing comma is fine."""
    va = tmp_path / "va.txt"
    va.write_text("valence,arousal\n0.1,0.2\n1,0.5,0.3\n")
    with pytest.raises(BadInputError, match=rf"^{va}: line 3: '1,0.5,0.3' is not 'valence,arousal'"):
        read_affwild2_file(va)
    va.write_text("valence,arousal\n0.1,0.2,\n0.3,0.4\n")
    np.testing.assert_allclose(read_affwild2_file(va), [[0.2, 0.1], [0.4, 0.3]])
