"""Small parsing and printing helpers that commands of more than one family use."""
from __future__ import annotations


def summary_line(summary: dict) -> str:
    """One readable line from a dict of figures."""
    return ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (list, dict)))


def split_csv(value: str | None) -> tuple[str, ...]:
    """The items of a comma-separated flag, stripped, empty ones dropped."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())
