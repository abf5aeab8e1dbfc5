"""The GPU layout on the CPU: a child built with data_format NCHW computes what the NHWC child
computes (logits, loss and every gradient) with the same weights, batch and arcs
(bench/gpu_check.compare_layouts, which a GPU machine runs on its GPU)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import gpu_check  # noqa: E402


@pytest.mark.parametrize("what, kwargs", gpu_check.layout_cases(), ids=lambda c: str(c)[:20])
def test_nchw_equals_nhwc(what, kwargs):
    """Both example cells with drop path and the aux head, a reduction of an odd (5x5) map, and
    a sampled search arc with recomputation (a training graph)."""
    assert gpu_check.compare_layouts(**kwargs) == [], what


def test_gpu_check_without_a_gpu_says_so_in_one_line(capsys):
    if gpu_check.gpu_names():
        pytest.skip("this machine has a GPU: run bench/gpu_check.py itself")
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [
        "No GPU visible to TensorFlow: nothing to check here (run this on the GPU machine)."]
