"""pytest setup: repo root (and tests/) on sys.path, TF graph mode, shared fixtures."""
import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)
for _p in (ROOT, TESTS_DIR):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import tensorflow as _tf  # noqa: E402

_tf.compat.v1.disable_v2_behavior()

from helpers import make_png_dataset as _make_png_dataset  # noqa: E402


@pytest.fixture
def make_png_dataset():
    """The helpers.make_png_dataset function (see its docstring) as a fixture."""
    return _make_png_dataset


# The files with the longest tests first. pytest.ini runs the suite on two pytest-xdist workers,
# each taking whole files in collection order: a long file taken last would run on alone.
SLOWEST_FILES_FIRST = ["test_reliability.py", "test_distributed.py", "test_output_dir_safety.py",
                       "test_controller.py", "test_child.py", "test_cli.py", "test_bad_input.py"]


def pytest_collection_modifyitems(items):
    """Orders the files as SLOWEST_FILES_FIRST, the others after them; tests keep their order
    within a file."""
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return SLOWEST_FILES_FIRST.index(name) if name in SLOWEST_FILES_FIRST else len(SLOWEST_FILES_FIRST)
    items.sort(key=rank)
