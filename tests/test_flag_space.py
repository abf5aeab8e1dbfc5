"""No reachable configuration corrupts memory: a sample of the flag space (bench/flag_sweep.py)
runs a search or retraining epoch in worker processes, so that a crash (glibc aborts on the
chunk headers a heap overflow breaks) is a failed case naming its flags. The whole space is
`python bench/flag_sweep.py`."""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import flag_sweep  # noqa: E402

# Widths whose factorized reductions see 6 to 14 input channels: oneDNN's strided 1x1 conv
# gradient overflowed its buffer there (ops.one_tap_conv). With a stride-2 1x1 conv put back in
# ops.one_tap_conv, both cases abort (TF 2.21, AVX-512 Zen 4): 3 layers and 12-16 pixels are what
# they need (0-2 layers or 8 pixels ran to the end with the bug in).
NARROW = [dict(child_out_filters=f, child_num_layers=3, child_num_cells=b, img_size=s, channel=c,
               batch_size=7) for f, b, s, c in ((8, 2, 16, 1), (10, 3, 12, 3))]


def test_sampled_flag_space_runs_without_memory_errors(tmp_path):
    rng = np.random.default_rng(2026)
    cases = [{"mode": "search", "flags": flags} for flags in NARROW]
    cases += [flag_sweep.random_case(rng, "final")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    results = flag_sweep.run_cases(cases, flag_sweep.make_data(str(tmp_path)), env=env)
    assert len(results) == len(cases)
    failed = ["status {}: {}\n{}".format(status, flag_sweep.describe(case), detail)
              for case, status, detail in results if status != 0]
    assert not failed, "\n".join(failed)
