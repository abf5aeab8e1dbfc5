"""Flag-space sweep: a few search and retraining steps for many flag combinations, each case
watched from outside, so that a crash (a heap corruption, a segfault) is a failed case that
names its flags instead of a dead run.

  python bench/flag_sweep.py                      60 cases drawn from the whole space (seed 0)
  python bench/flag_sweep.py --cases 200 --seed 3
  python bench/flag_sweep.py --widths             every even child_out_filters 2..48, both modes
A heap overflow shows as an abort when it breaks a malloc chunk header (glibc checks them on
every call). glibc's stricter checker (MALLOC_CHECK_=3) needs LD_PRELOAD=libc_malloc_debug.so.0
since glibc 2.34, and was not active under a pyenv-built Python even then.

The space a user can reach: child_out_filters even 2..48, child_num_cells 2..7,
child_num_layers 0..6, img_size multiples of 4 from 8 to 40, channel 1 and 3, batch sizes that
do and do not divide the training set, every child_shared_init value, both data formats.
A case parses its flags with the scripts' own parser (enas_flags), builds graph.build's graph,
runs one epoch of child steps (the partial last batch included), one valid pass and, in a
search, two controller updates on reward batches.

Cases run in worker processes (this script with --worker), several per process; a worker prints
a line before and after each case, so when a worker dies the case it was in fails with the
worker's exit status, and a fresh worker goes on with the rest. tests/test_flag_space.py runs a
sample of the space with this module.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

NUM_CLASSES = 3
PER_CLASS = (5, 3, 2)  # train, valid, test images per class: 15 training images
BATCH_SIZES = (4, 5, 7, 15)  # 15 % b: 3, 0, 1, 0 (a partial last batch or none)
SPACE = dict(child_out_filters=list(range(2, 49, 2)), child_num_cells=list(range(2, 8)),
             child_num_layers=list(range(0, 7)), img_size=list(range(8, 41, 4)), channel=[1, 3],
             batch_size=list(BATCH_SIZES), child_shared_init=["aligned", "he", "authors"],
             data_format=["NHWC", "NCHW"])


def random_case(rng, mode=None):
    """One case: {"mode": "search" or "final", "flags": {name: value}} drawn uniformly from SPACE
    (a retraining also gets a random arc string)."""
    import search_space
    flags = {name: values[rng.integers(len(values))] for name, values in SPACE.items()}
    flags = {k: v.item() if hasattr(v, "item") else v for k, v in flags.items()}
    mode = mode or ("search", "final")[rng.integers(2)]
    if mode == "final":
        del flags["child_shared_init"]
        flags["child_fixed_arc"] = search_space.random_arc_string(flags["child_num_cells"], rng)
    return {"mode": mode, "flags": flags}


def width_cases():
    """Every even child_out_filters from 2 to 48 in a search and a retraining (3 layers, 5 cells,
    16x16 grey images, batch 7), the other flags at their defaults."""
    import search_space
    cases = []
    for width in SPACE["child_out_filters"]:
        flags = dict(child_out_filters=width, child_num_layers=3, img_size=16, channel=1, batch_size=7)
        cases.append({"mode": "search", "flags": dict(flags)})
        cases.append({"mode": "final", "flags": dict(flags, child_fixed_arc=search_space.MNIST_ARC)})
    return cases


def describe(case):
    """The case as the command-line flags of its script."""
    script = "main_controller_child_trainer.py" if case["mode"] == "search" else "main_child_trainer.py"
    return script + " " + " ".join("--{} {}".format(k, json.dumps(v) if " " in str(v) else v)
                                   for k, v in sorted(case["flags"].items()))


def make_data(root):
    """Tiny learnable PNG folders root/c{1,3}/{train,valid,test}; returns {channel: dirs}."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from helpers import make_png_dataset
    return {c: make_png_dataset(os.path.join(root, "c%d" % c), NUM_CLASSES, PER_CLASS, 12, c)
            for c in (1, 3)}


def run_cases(cases, data_dirs, env=None, timeout_s=600):
    """Runs cases in worker processes; returns [(case, status, detail)]: status 0 for a case that
    ran, else the dying worker's exit status (or "error" for a Python error in the case).
    timeout_s is per case: a worker may take timeout_s times its number of cases."""
    results = []
    for mode in ("search", "final"):  # a worker defines one script's flags
        todo = [case for case in cases if case["mode"] == mode]
        while todo:
            done = _run_worker(mode, todo, data_dirs, env, timeout_s)
            results.extend(done)
            todo = todo[len(done):]
    return results


def _run_worker(mode, cases, data_dirs, env, timeout_s):
    """One worker over cases until it ends; returns the results of the cases it started."""
    payload = json.dumps({"mode": mode, "cases": cases,
                          "data": {str(k): v for k, v in data_dirs.items()}})
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker"], input=payload,
                          capture_output=True, text=True, env=env, timeout=timeout_s * len(cases), cwd=ROOT)
    results, started = [], None
    for line in proc.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "START":
            started = int(rest)
        elif kind in ("OK", "ERROR"):
            results.append((cases[int(rest.split(" ")[0])], 0 if kind == "OK" else "error", rest))
            started = None
    if started is not None:  # the worker died inside this case
        detail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        results.append((cases[started], proc.returncode, detail))
    elif len(results) < len(cases):
        raise RuntimeError("worker stopped between cases: {}\n{}".format(proc.returncode, proc.stderr[-2000:]))
    return results


# ----------------------------------------------------------------------------- in the worker
def _parse(case, data_dirs):
    """The case's flags through the scripts' own parser and checks."""
    import enas_flags
    import search_space
    flags = enas_flags.FLAGS
    flags.unparse_flags()
    dirs = data_dirs[str(case["flags"]["channel"])]
    argv = ["sweep", "--train_data_dir", dirs[0], "--val_data_dir", dirs[1], "--test_data_dir",
            dirs[2], "--n_aug_img", "1", "--seed", "0"]
    argv += ["--{}={}".format(k, v) for k, v in case["flags"].items()]
    flags(argv)
    enas_flags.check_flags(flags, case["mode"])
    fixed_arc = None
    if case["mode"] == "final":
        fixed_arc = search_space.parse_arc(flags.child_fixed_arc, flags.child_num_cells)
    return flags, fixed_arc


def _run_case(case, data_dirs):
    """One epoch of child steps, a valid pass and (search) two controller updates."""
    import tensorflow.compat.v1 as tf
    import data_utils
    import graph as graph_lib
    import reward as reward_lib
    flags, fixed_arc = _parse(case, data_dirs)
    data = data_utils.read_data(flags.train_data_dir, flags.val_data_dir, flags.test_data_dir,
                                flags.channel, flags.img_size, 1, batch_size=flags.batch_size)
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        g = graph_lib.build(flags, data, fixed_arc)
        config = graph_lib.session_config(flags, search=fixed_arc is None)
        with tf.Session(config=config) as sess:
            sess.run(g.init_op)
            for _ in range(g.num_train_batches):
                loss = sess.run([g.train.train_op, g.train.loss])[1]
                assert np.isfinite(loss), loss
            sess.run(g.eval_init["valid"])
            while True:
                try:
                    sess.run(g.eval_correct, g.feed(sess, "valid"))
                except tf.errors.OutOfRangeError:
                    break
            if fixed_arc is None:
                for _ in range(2):
                    sess.run(g.controller.train_op, reward_lib.feed(sess, g))


def worker():
    """Reads {"mode", "cases", "data"} as JSON on stdin (cases of that mode); runs each case, printing START i / OK i / ERROR i."""
    import utils  # noqa: F401  (TensorFlow's quiet import, as the scripts)
    import tensorflow.compat.v1 as tf
    import enas_flags
    tf.get_logger().setLevel("ERROR")
    tf.disable_v2_behavior()
    tf.enable_resource_variables()
    utils.probe_devices_quietly()
    job = json.load(sys.stdin)
    enas_flags.define_flags(job["mode"])
    for i, case in enumerate(job["cases"]):
        print("START", i, flush=True)
        try:
            _run_case(case, job["data"])
        except Exception as e:  # a Python error is a failed case too, not a dead worker
            print("ERROR", i, type(e).__name__, str(e).splitlines()[0][:300], flush=True)
            continue
        print("OK", i, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=60, help="random cases drawn from the space")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--widths", action="store_true", help="every even width, search and retraining")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker()
    rng = np.random.default_rng(args.seed)
    cases = width_cases() if args.widths else [random_case(rng) for _ in range(args.cases)]
    with tempfile.TemporaryDirectory() as tmp:
        results = run_cases(cases, make_data(tmp))
    failed = [(case, status, detail) for case, status, detail in results if status != 0]
    for case, status, detail in failed:
        print("FAILED (status {}): {}\n  {}".format(status, describe(case), detail.replace("\n", "\n  ")))
    print("{} passed, {} failed".format(len(results) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
