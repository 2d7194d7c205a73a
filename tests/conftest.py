"""Make the tests' helper modules (synth_video) importable whatever the import mode; the --update-digests flag."""
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


def pytest_addoption(parser):
    parser.addoption("--update-digests", action="store_true", default=False,
                     help="tests/test_digests.py: record each stage's output digest and fingerprint "
                          "(a deliberate step, after bumping a stage's version)")
