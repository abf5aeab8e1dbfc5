"""Throughput of retraining or of the search in one process and on local clusters of 1..N workers.

    python bench/distributed.py [--search] [--num_workers 1 2] [--num_epochs E] [-- trainer flags]

Runs the trainer (main_child_trainer.py, or with --search main_controller_child_trainer.py) alone,
then launch_local.py with each --num_workers, on the same flags (default: the shipped digits; the
README's MNIST cell with 6 layers for retraining, the search's own defaults with 5 controller
updates per phase for the search), with --log_every 1 and the only eval at the end. It prints:
  child images/s   over the chief's consecutive step lines within an epoch (time-stamped as they
                   arrive), images = global steps x batch_size x workers (one update averages one
                   batch per worker);
  s per controller update   the mean of the chief's "Controller phase: ..." lines (search).
Output folders go to a temp dir and are deleted.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import search_space  # noqa: E402  (TF-free)
from machine import cpu_model  # noqa: E402

DEFAULT_FLAGS = {False: ["--child_fixed_arc", search_space.MNIST_ARC, "--child_num_layers", "6", "--n_aug_img", "1"],
                 True: ["--controller_train_steps", "5", "--controller_num_final_arcs", "2"]}
STEP_LINE = re.compile(r"^epoch = \d+\s+ch_step = (\d+)\s")
CONTROLLER_LINE = re.compile(r"^Controller phase: (\d+) updates in \S+ s \((\S+) s per update\)")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--search", action="store_true", help="time the search instead of retraining")
    p.add_argument("--num_workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--num_epochs", type=int, default=None, help="default 6 (retraining), 3 (search)")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("trainer_flags", nargs=argparse.REMAINDER)
    args = p.parse_args()
    args.trainer_flags = [f for f in args.trainer_flags if f != "--"] or DEFAULT_FLAGS[args.search]
    args.num_epochs = args.num_epochs or (3 if args.search else 6)
    return args


def timed_lines(cmd):
    """Runs cmd; returns (status, [(arrival time, stdout line)], stderr)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = [(time.time(), line) for line in proc.stdout]
    return proc.wait(), lines, proc.stderr.read()


def child_rate(lines, batch_size, workers):
    """(images/s, global steps timed) over pairs of step lines with no epoch end between them."""
    steps = seconds = 0
    previous = None
    for arrival, line in lines:
        match = STEP_LINE.match(line)
        if match:
            step = int(match.group(1))
            if previous:
                steps, seconds = steps + step - previous[1], seconds + arrival - previous[0]
            previous = (arrival, step)
        elif line.startswith("Epoch "):  # an epoch end (controller phase, eval) is not timed
            previous = None
    return steps * batch_size * workers / max(seconds, 1e-9), steps


def run(label, cmd, batch_size, workers):
    status, lines, stderr = timed_lines(cmd)
    if status != 0:
        print("{}: failed (status {}): {}".format(label, status, stderr.strip()[-500:]))
        return
    rate, steps = child_rate(lines, batch_size, workers)
    controller = [float(m.group(2)) for m in (CONTROLLER_LINE.match(l) for _, l in lines) if m]
    phase = "  {:.2f} s per controller update".format(statistics.mean(controller)) if controller else ""
    print("{:<22s} {:>8.1f} child images/s  ({} global steps of {} images){}".format(
        label, rate, steps, batch_size * workers, phase), flush=True)


def main():
    args = parse_args()
    trainer = "main_controller_child_trainer.py" if args.search else "main_child_trainer.py"
    print("CPU: {}; {}: {}".format(cpu_model(), trainer, " ".join(args.trainer_flags)), flush=True)
    tmp = tempfile.mkdtemp(prefix="bench_distributed_")
    common = args.trainer_flags + ["--num_epochs", str(args.num_epochs), "--batch_size", str(args.batch_size),
                                   "--log_every", "1", "--eval_every_epochs", str(args.num_epochs + 1)]
    try:
        run("one process", [sys.executable, trainer] + common +
            ["--output_dir", os.path.join(tmp, "single")], args.batch_size, 1)
        for n in args.num_workers:
            run("cluster, {} worker(s)".format(n),
                [sys.executable, "launch_local.py", "--num_workers", str(n)] + ["--search"] * args.search +
                ["--"] + common + ["--output_dir", os.path.join(tmp, "cluster{}".format(n))],
                args.batch_size, n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
