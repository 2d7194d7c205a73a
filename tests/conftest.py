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


# The longest files first (seconds, one process, 2-core CI machine, 2026-11-23; re-ranked 2026-11-25: from that CI
# log, test_pipeline >= 209 s before test_damaged_chunk >= 193 s; measured alone, test_predict 193 s, test_cli_input
# 146 s, and test_omg_labels 106 s, test_run_lock 62 s, test_omg_released 44 s, which were unlisted and so ran in the
# alphabetical tail): `make test` runs the files on two pytest-xdist workers (--dist loadfile, so a module's fixtures
# are built once), which take the files in this order; a long file collected last would leave the other worker idle
# for its whole length.
_LONGEST_FIRST = ["test_slurm", "test_pipeline", "test_damaged_chunk", "test_predict", "test_cli_input",
                  "test_resume", "test_source_identity", "test_datasets", "test_cluster", "test_variants",
                  "test_integrity", "test_face_transforms", "test_train_trust", "test_omg_labels", "test_run_lock",
                  "test_lock", "test_omg_released"]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: k for k, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))   # stable: files stay whole
