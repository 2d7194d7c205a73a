"""Export a dataset's cache to HDF5 for loaders that read it (same array names, one group per video)."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from pipeline import store


def export_h5(cache: str | Path, dataset: str, out: str | Path) -> tuple[Path, int]:
    """Copy every done video, chunk by chunk (bounded memory), into `out`; returns (path, videos)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    idx = store.done_videos(cache, dataset)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with h5py.File(tmp, "w") as h5:
        h5.attrs["dataset"] = dataset
        for video in idx.video:
            g = store.open_video(cache, dataset, video)
            grp = h5.create_group(video)
            for k, v in g.attrs.items():
                grp.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) or v is None else v
            for name in g.array_keys():
                src = g[name]
                dst = grp.create_dataset(name, shape=src.shape, dtype=src.dtype,
                                         chunks=(min(store.CHUNK_T, max(1, src.shape[0])), *src.shape[1:]),
                                         compression="gzip", compression_opts=1)
                for lo in range(0, src.shape[0], store.CHUNK_T):
                    dst[lo:lo + store.CHUNK_T] = np.asarray(src[lo:lo + store.CHUNK_T])
    tmp.replace(out)
    return out, len(idx)
