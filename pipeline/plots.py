"""Saving plots that say what made them (the data and settings), in the figure and in the PNG's text, for the
plots of every layer above: inspect's here, a run's and predict's in train/ (which may import pipeline/, not the
other way round)."""
from __future__ import annotations

from pathlib import Path


def save_captioned(fig, path: Path, text: str | None, dpi: int, layout: bool = True) -> None:
    """Save with ``text`` as a small caption at the top and as the PNG's Description (readable by tools, e.g.
    ``PIL.Image.open(path).text["Description"]``). ``layout`` False: the figure left room for it at the top
    itself (one laid out around a colour bar, which tight_layout cannot lay out again)."""
    if text:
        h = fig.get_figheight()
        fig.suptitle(text, fontsize=7, x=0.01, y=1 - 0.05 / h, ha="left", va="top")
        if layout:
            fig.tight_layout()   # it leaves room for the suptitle
    fig.savefig(path, dpi=dpi, metadata={"Description": text} if text else None)
