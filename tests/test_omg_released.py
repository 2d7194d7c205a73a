"""omg_TestVideos_WithLabels.csv released after a cache was made from omg_TestVideos_WithoutLabels.csv alone, and
lacking some of its clips (the real release's case: build_root's labelled CSV has no row for vT/u3.mp4).

Found untrue before: `train` judged by the labelled file existing, so it refused claiming labels had appeared for
every test clip, vT__u3 included, and the store's check refused vT__u3 alike, though `features` finds no label for
it. Now only the clips the CSV's rows name are said to have labels; the others are said to have no row there.

Real clips (OpenCV), the real OMG lister and extraction graph, a real Zarr cache.
"""
from __future__ import annotations

import csv

import pytest
from test_omg_labels import _row, build_root

from features.errors import BadInputError
from pipeline import graph, store
from pipeline.extract import Settings
from pipeline.manifest import get_dataset, list_videos
from train import videos


def test_a_labelled_release_lacking_clips_names_only_the_clips_it_labels(tmp_path):
    root, cache = build_root(tmp_path / "omg"), tmp_path / "cache"
    released = root / "omg_TestVideos_WithLabels.csv"
    text = released.read_text()
    released.unlink()                                     # as for the challenge: the test CSV without labels only

    def extract() -> dict:
        entries = list_videos(get_dataset("omg", root=root))
        rows = graph.run(entries, cache, "omg", Settings(stages=("align",), weights="random"), workers=1,
                         progress=False, echo=lambda *a: None, whole_dataset=True).rows
        return {r["video"]: r for r in rows}

    assert all(store.known_unlabelled(store.index_row(cache, "omg", f"vT__u{j}")) for j in (1, 2, 3)
               if extract()[f"vT__u{j}"]["status"] == "done")
    released.write_text(text)                             # released since, with rows for vT/u1 and vT/u2 only
    with pytest.raises(BadInputError) as e:
        videos.select(cache, "omg", [], skip_unusable=True)
    assert (f"2 videos were cached without labels (vT__u1, vT__u2), and labels for them have appeared since "
            f"({released.resolve()}); this run would leave them out; 1 other video cached without labels (vT__u3) "
            f"has no row in {released.resolve()}: it stays unlabelled") in str(e.value)
    assert e.value.hint.startswith(f"run `{store.repair_command(cache, 'omg', ['labels'])}`")
    # the store's check agrees: vT__u3's labels have not appeared; vT__u1's have
    store.check_arrays(cache, "omg", "vT__u3", ["labels"])
    with pytest.raises(store.UnusableVideo, match="labels for it have appeared since"):
        store.check_arrays(cache, "omg", "vT__u1", ["labels"])
    # `features` reads them: vT__u1 and vT__u2 labelled, vT__u3 still not, and nothing is refused any more
    assert {v: r["action"] for v, r in extract().items() if v.startswith("vT")}["vT__u1"] == "update"
    assert store.index_row(cache, "omg", "vT__u2")["video_arousal"] == pytest.approx(0.4)
    assert store.known_unlabelled(store.index_row(cache, "omg", "vT__u3"))
    sel = videos.select(cache, "omg", [], skip_unusable=True)
    assert "test" in {r["split"] for r in sel.rows}
    # the run goes on, and says the released table has no row for vT__u3 (it was read past with "none were found")
    assert sel.left_out["vT__u3"] == (f"came without labels ({released.resolve()}, there now, has no row for it), "
                                      "unlike the other videos of split 'test': neither trained on nor scored")
    assert f"{released.resolve()} has no row for the 1 video cached without labels (vT__u3): it stays unlabelled" \
        in sel.notes, sel.notes
    # a later edition of the labelled CSV with a row for vT__u3: seen, as the first release was
    with open(released, "a", newline="") as fh:
        csv.writer(fh).writerow(_row("vT", "u3.mp4", "0.6", "0.2"))
    with pytest.raises(BadInputError, match=r"1 video was cached without labels \(vT__u3\), and labels for it have "):
        videos.select(cache, "omg", [], skip_unusable=True)
    assert {v: r["action"] for v, r in extract().items() if v.startswith("vT")}["vT__u3"] == "update"
    assert store.index_row(cache, "omg", "vT__u3")["video_arousal"] == pytest.approx(0.6)
