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
