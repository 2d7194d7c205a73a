"""The dependency direction DESIGN.md fixes, read from the sources: features/ is pure (imports neither pipeline/ nor
train/), pipeline/ never imports train/, and train/ reaches features/ only for its errors, except predict.py, which
runs the feature stages on new videos."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    """Every absolute module a file imports, at top level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def _package(name: str) -> list[Path]:
    files = sorted((ROOT / name).glob("*.py"))
    assert files, name
    return files


@pytest.mark.parametrize("package, forbidden", [("features", ("pipeline", "train")), ("pipeline", ("train",))])
def test_lower_layers_never_import_higher_ones(package, forbidden):
    for f in _package(package):
        bad = {m for m in _imports(f) if m.split(".")[0] in forbidden}
        assert not bad, f"{f.relative_to(ROOT)} imports {sorted(bad)}"


def test_train_reaches_features_only_for_errors():
    for f in _package("train"):
        used = {m for m in _imports(f) if m.split(".")[0] == "features"}
        allowed = {"features.errors", "features.errors.BadInputError"}
        if f.name != "predict.py":
            assert used <= allowed, f"{f.relative_to(ROOT)} imports {sorted(used - allowed)}"
