"""Images/second of retraining in one process and on local clusters of 1..N workers.

    python bench/distributed.py [--num_workers 1 2] [--num_epochs 6] [-- main_child_trainer.py flags]

Runs main_child_trainer.py alone, then launch_local.py with each --num_workers, on the same flags
(default: the README's MNIST cell, 6 layers, no augmentation, on the shipped digits), with
--log_every 1 and the only eval at the end. Throughput is measured on the chief's own log lines,
from its first logged step to its last: images = global steps x batch_size x workers (one update
averages one batch per worker). Output folders go to a temp dir and are deleted.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import search_space  # noqa: E402  (TF-free)

DEFAULT_FLAGS = ["--child_fixed_arc", search_space.MNIST_ARC, "--child_num_layers", "6", "--n_aug_img", "1"]
STEP_LINE = re.compile(r"^epoch = \d+\s+ch_step = (\d+)\s.*mins = (\S+)", re.M)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num_workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--num_epochs", type=int, default=6)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("trainer_flags", nargs=argparse.REMAINDER)
    args = p.parse_args()
    args.trainer_flags = [f for f in args.trainer_flags if f != "--"] or DEFAULT_FLAGS
    return args


def images_per_second(stdout, batch_size, workers):
    """(images/s, global steps timed) between the chief's first and last logged step."""
    steps = [(int(s), float(m)) for s, m in STEP_LINE.findall(stdout)]
    (first_step, first_min), (last_step, last_min) = steps[0], steps[-1]
    seconds = (last_min - first_min) * 60.0
    return (last_step - first_step) * batch_size * workers / seconds, last_step - first_step


def run(label, cmd, batch_size, workers):
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        print("{}: failed (status {}): {}".format(label, result.returncode, result.stderr.strip()[-500:]))
        return
    rate, steps = images_per_second(result.stdout, batch_size, workers)
    print("{:<22s} {:>8.1f} images/s  ({} global steps of {} images)".format(
        label, rate, steps, batch_size * workers), flush=True)


def main():
    args = parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_distributed_")
    common = args.trainer_flags + ["--num_epochs", str(args.num_epochs), "--batch_size", str(args.batch_size),
                                   "--log_every", "1", "--eval_every_epochs", str(args.num_epochs + 1)]
    try:
        run("one process", [sys.executable, "main_child_trainer.py"] + common +
            ["--output_dir", os.path.join(tmp, "single")], args.batch_size, 1)
        for n in args.num_workers:
            run("cluster, {} worker(s)".format(n),
                [sys.executable, "launch_local.py", "--num_workers", str(n), "--"] + common +
                ["--output_dir", os.path.join(tmp, "cluster{}".format(n))], args.batch_size, n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
