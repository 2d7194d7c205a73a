"""Done videos whose last `features` run reported an error: their file changed since they were made (cut, say) and
the rebuild failed, so the cache keeps the arrays made from the file as it was (pipeline/store.py swaps new arrays
in only when complete). Readers read them (the arrays are consistent with the source their group records), and say
so: `train` (metrics.json's not_updated), `predict --cache` (predict.json's not_updated), `export` (the file's and
the group's attrs not_updated), and ablate's tables. `info --cache` lists them as `kept`.
"""
from __future__ import annotations

from pipeline.wording import counted


def errors(rows, videos=None) -> dict[str, str]:
    """{video: the error of its last `features` run} of the index ``rows`` (dicts) that are done with an error,
    among ``videos`` when given."""
    return {r["video"]: str(r["error"]) for r in rows
            if (videos is None or r["video"] in videos) and r.get("status") == "done"
            and isinstance(r.get("error"), str) and r["error"]}


def note(errors: dict[str, str], reads: str = "this run reads",
         listed: str = "metrics.json lists {it} in not_updated") -> str:
    """What a reader says of the done videos it reads whose last `features` run reported an error ({video: error}).
    ``reads``: who reads them ("this run reads"); ``listed``: where they are recorded, "{it}" standing for it/them."""
    one = len(errors) == 1
    it = "it" if one else "them"
    listing = "; ".join(f"{v}: {e}" for v, e in sorted(errors.items()))
    return (f"{counted(len(errors), 'video')} read as cached before {'its' if one else 'their'} last `features` run, "
            f"which reported an error ({listing}): {reads} the arrays made before, from "
            f"{'its file as it was' if one else 'their files as they were'} then; {listed.format(it=it)}. Fix what "
            f"the error says and run `features` again to update {it}")
