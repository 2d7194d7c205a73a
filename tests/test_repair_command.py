"""Repair commands that readers print, pasted into a shell as printed."""
from __future__ import annotations

import numpy as np

from pipeline import store
from pipeline.features_cmd import resolve_motion_variant


def test_a_variant_held_only_with_face_transforms_is_read_for_its_repair(tmp_path):
    """A cache made with `--motion-variant mw9+gamma0.2 --motion-mean-window 9` holds no plain dphase@mw9; its repair
    command names `--motion-variant mw9+gamma0.2` without the flags, which must read mw9's settings from the group."""
    made = {"dphase_s0@mw9+gamma0.2": {"motion_variant": "mw9+gamma0.2", "motion": {"mean_window": 9}}}
    store.write_video(tmp_path, "ds", "v1", {"valid": np.ones(4, bool)}, {"n_frames": 4, "made_with": made})
    assert "--motion-variant mw9+gamma0.2" in store.repair_command(tmp_path, "ds", ["dphase_s0@mw9+gamma0.2"])
    assert resolve_motion_variant("mw9+gamma0.2", {}, tmp_path, "ds") == ("mw9+gamma0.2", {"mean_window": 9})
