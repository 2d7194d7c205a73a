"""The test builder's Aff-Wild2 layout reads as the real one does: the manifest's lister and label reader agree."""
import numpy as np
import pytest
from affwild2_layout import UNANNOTATED, build_affwild2_layout

from features.video import iter_chunks
from pipeline.manifest import get_dataset, list_videos, load_labels


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return build_affwild2_layout(tmp_path_factory.mktemp("affwild2"), openface=False)


def test_the_manifest_lists_every_entry_with_its_video_and_split(layout):
    entries = {e.video: e for e in list_videos(get_dataset("affwild2", root=layout.root))}
    assert set(entries) == set(layout.entries) == {"1-30-176x144", "video10_1", "5-30-480x240_left",
                                                   "5-30-480x240_right", "2-24-176x144"}
    for name, e in layout.entries.items():
        assert entries[name].path == e.video_path
        assert entries[name].split == {"Train_Set": "train", "Validation_Set": "validation"}[e.split]
    assert entries["5-30-480x240_left"].path == entries["5-30-480x240_right"].path
    assert {p.suffix for p in layout.videos_dir.iterdir()} == {".mp4", ".avi"}


def test_labels_have_a_line_per_frame_except_one_video(layout):
    entries = {e.video: e for e in list_videos(get_dataset("affwild2", root=layout.root))}
    for name, e in layout.entries.items():
        assert sum(len(c.frames) for c in iter_chunks(e.video_path)) == e.n_frames
        labels = load_labels(entries[name])  # (arousal, valence), NaN where -5
        assert len(labels) == e.n_frames + (1 if name == "video10_1" else 0)
        unannotated = (e.labels == UNANNOTATED).any(1)
        assert unannotated.sum() >= 2 and np.isnan(labels[unannotated]).all()
        np.testing.assert_allclose(labels[~unannotated], e.labels[~unannotated][:, ::-1], atol=5e-4)


def test_crops_are_organiser_style_with_gaps(layout):
    for e in layout.entries.values():
        files = sorted(p.name for p in e.crop_dir.iterdir())
        assert files == [f"{t + 1:05d}.jpg" for t in np.flatnonzero(e.crops)]
        assert (e.present & ~e.crops).sum() == 2  # the detector's misses
    assert not layout.entries["2-24-176x144"].crops[-6:].any()  # trailing frames without a face: no files
