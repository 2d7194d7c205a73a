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


# The longest files first (seconds, one process, 2-core CI machine, 2026-11-23): `make test` runs the files on two
# pytest-xdist workers (--dist loadfile, so a module's fixtures are built once), which take the files in this
# order; a long file collected last would leave the other worker idle for its whole length.
_LONGEST_FIRST = ["test_slurm", "test_damaged_chunk", "test_pipeline", "test_cli_input", "test_predict",
                  "test_resume", "test_source_identity", "test_datasets", "test_cluster", "test_variants",
                  "test_integrity", "test_face_transforms", "test_train_trust", "test_lock"]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: k for k, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))   # stable: files stay whole
