"""No reachable configuration corrupts memory: a sample of the flag space (bench/flag_sweep.py)
runs a search or retraining epoch in worker processes under glibc's heap checker, so that a
crash is a failed case naming its flags. The whole space is `python bench/flag_sweep.py`."""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import flag_sweep  # noqa: E402

# Widths whose factorized reductions see 8 to 14 input channels: oneDNN's strided 1x1 conv
# gradient overflowed its buffer there (ops.one_tap_conv). num_layers 0: both cells reduce.
NARROW = [dict(child_out_filters=f, child_num_layers=0, child_num_cells=2, img_size=8, channel=c,
               batch_size=b) for f, c, b in ((6, 3, 7), (10, 1, 4))]


def test_sampled_flag_space_runs_without_memory_errors(tmp_path):
    rng = np.random.default_rng(2026)
    cases = [{"mode": "search", "flags": flags} for flags in NARROW]
    cases += [flag_sweep.random_case(rng, "final")]
    env = dict(os.environ, MALLOC_CHECK_="3", TF_CPP_MIN_LOG_LEVEL="2")
    results = flag_sweep.run_cases(cases, flag_sweep.make_data(str(tmp_path)), env=env)
    assert len(results) == len(cases)
    failed = ["status {}: {}\n{}".format(status, flag_sweep.describe(case), detail)
              for case, status, detail in results if status != 0]
    assert not failed, "\n".join(failed)
