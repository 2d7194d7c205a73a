"""The project imports and its layout is as DESIGN.md fixes it."""
import importlib


def test_packages_import():
    for name in ("features", "pipeline", "train"):
        assert importlib.import_module(name) is not None
