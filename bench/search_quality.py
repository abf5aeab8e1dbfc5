"""Does the search beat random? ENAS against random search with weight sharing, retrained alike.

    python bench/search_quality.py --data_dir DIR [--img_size 32 --channel 1]
        [--search_epochs 10] [--retrain_epochs 10] [--num_random 4] [--seed 0]
        [--search_args "--batch_size 64 ..."] [--enas_args "--controller_lr 0.01 ..."]
        [--retrain_args "--child_num_layers 6 ..."] [--work_dir DIR]

Runs, each as the command a user would type:
  (a) the search (main_controller_child_trainer.py) for --search_epochs;
  (b) the same search with --random_search (cells drawn uniformly, controller never trained);
  (c) retrains (main_child_trainer.py) the best cell of (a), the best cell of (b) and
      --num_random cells drawn uniformly at random, all with the same flags and budget.
Prints one table (cell, source, retrained valid and test accuracy) and the margin of each searched
cell over the mean of the random cells, in units of their standard deviation too.
DIR holds train/, valid/ and test/ class folders (bench/make_dataset.py makes harder ones than the
shipped digits). Outputs go to --work_dir (default: a temp folder, deleted at the end); rerun
with the same --work_dir, it reuses the searches and retrainings it already has with the same
flags as each run resolves them (defaults included) and the same data (bench/cache_key.py), so a
variant (other --search_args) costs its own searches and their cells' retraining only, and a
controller variant (other --enas_args, flags of search (a) alone) one search and one retraining.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import cache_key  # noqa: E402
import search_space  # noqa: E402


def run_args_parser(doc, img_size, channel, num_cells, retrain_epochs):
    """An argument parser with the flags every run of a search-quality benchmark shares (data,
    cells, seed, budgets, extra flags, work_dir), at the given defaults."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--data_dir", required=True, help="folder with train/, valid/, test/")
    p.add_argument("--img_size", type=int, default=img_size)
    p.add_argument("--channel", type=int, default=channel, choices=(1, 3))
    p.add_argument("--num_cells", type=int, default=num_cells, help="--child_num_cells of every run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--search_epochs", type=int, default=10)
    p.add_argument("--retrain_epochs", type=int, default=retrain_epochs)
    p.add_argument("--search_args", default="", help="extra flags of the searches (one flag alone: "
                                                      "--search_args=--flag)")
    p.add_argument("--enas_args", default="", help="extra flags of the ENAS search (controller) only")
    p.add_argument("--retrain_args", default="", help="extra flags of every retraining")
    p.add_argument("--work_dir", help="keep every run's output_dir here")
    return p


def parse_args(argv=None):
    p = run_args_parser(__doc__, img_size=32, channel=1, num_cells=5, retrain_epochs=10)
    p.add_argument("--num_random", type=int, default=4, help="random cells retrained")
    return p.parse_args(argv)


def common_flags(args):
    """The data (absolute folders: the runs' working directory is the repository), cells and seed."""
    split = lambda s: os.path.join(os.path.abspath(args.data_dir), s)
    return ["--train_data_dir", split("train"), "--val_data_dir", split("valid"),
            "--test_data_dir", split("test"), "--img_size", str(args.img_size),
            "--channel", str(args.channel), "--child_num_cells", str(args.num_cells),
            "--seed", str(args.seed)]


def run(script, flags, log_path):
    """Runs one entry script to its end; its output goes to log_path. Returns its stdout."""
    cmd = [sys.executable, os.path.join(ROOT, script)] + flags
    print("$ " + " ".join(shlex.quote(c) for c in cmd[1:]), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    with open(log_path, "w") as f:
        f.write(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit("error: {} exited with status {}; see {}".format(script, r.returncode,
                                                                          log_path))
    return r.stdout


def search_flags(args, extra):
    """Every flag of a search but its output_dir: the data, cells and seed, --search_epochs, extra
    (e.g. --random_search) and --search_args."""
    return common_flags(args) + ["--num_epochs", str(args.search_epochs)] + extra + shlex.split(
        args.search_args)


def search_dir(args, work_dir, kind, extra):
    """Runs a search into a folder of work_dir named by kind and the cache key of its flags
    (search_flags, resolved) and data (cache_key.run_key), unless that folder already holds a
    finished one; returns the folder."""
    flags = search_flags(args, extra)
    out = os.path.join(work_dir, "search_{}_seed{}_{}".format(
        kind, args.seed, cache_key.run_key("search", flags)[:12]))
    if not os.path.exists(os.path.join(out, "best_arc.txt")):
        run("main_controller_child_trainer.py", flags + ["--output_dir", out], out + ".log")
    return out


def search(args, work_dir, kind, extra):
    """search_dir's best arc string."""
    with open(os.path.join(search_dir(args, work_dir, kind, extra), "best_arc.txt")) as f:
        return f.read().strip()


def retrain_flags(args, arc):
    """Every flag of arc's retraining but its output_dir: the data, cells and seed,
    --retrain_epochs and --retrain_args."""
    return common_flags(args) + ["--child_fixed_arc", arc, "--num_epochs", str(args.retrain_epochs)] + \
        shlex.split(args.retrain_args)


def retrained(args, work_dir, arc):
    """(valid_acc, test_acc) of arc retrained alone; cached in work_dir/retrained.json by arc and
    the cache key of its retraining's flags (resolved) and data (cache_key.run_key), so variants
    that share cells retrain nothing twice."""
    cache_path = os.path.join(work_dir, "retrained.json")
    cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
    flags = retrain_flags(args, arc)
    run_key = cache_key.run_key("final", flags)
    key = "{} | {}".format(arc, run_key)
    if key not in cache:
        cache[key] = retrain(flags, os.path.join(work_dir, "retrain_" + run_key[:12]))
        with open(cache_path, "w") as f:
            json.dump(cache, f, indent=1)
    return tuple(cache[key])


def retrain(flags, out):
    """Retrains with flags (retrain_flags) into out; returns (valid_acc, test_acc) of its last
    evaluation."""
    stdout = run("main_child_trainer.py", flags + ["--output_dir", out], out + ".log")
    valid = re.findall(r"^valid_accuracy: (\S+)", stdout, re.M)
    test = re.findall(r"^test_accuracy: (\S+)", stdout, re.M)
    return float(valid[-1]), float(test[-1])


def print_table(rows):
    """rows: [(name, source, arc, valid, test)]; random cells have source 'random'."""
    print("\n{:<10} {:<32} {:>8} {:>8}  arc".format("cell", "source", "valid", "test"))
    for name, source, arc, valid, test in rows:
        print("{:<10} {:<32} {:>8.4f} {:>8.4f}  {}".format(name, source, valid, test, arc))
    random_rows = [r for r in rows if r[1] == "random"]
    for column, label in ((3, "valid"), (4, "test")):
        accs = np.array([r[column] for r in random_rows])
        mean, std = accs.mean(), accs.std(ddof=1) if len(accs) > 1 else 0.0
        print("\nrandom cells, {}: mean {:.4f}, std {:.4f} (n = {})".format(label, mean, std,
                                                                            len(accs)))
        for r in rows:
            if r[1] != "random":
                margin = r[column] - mean
                sigmas = " = {:+.2f} std".format(margin / std) if std > 0 else ""
                print("  {} ({}): {:+.4f}{}".format(r[0], r[1], margin, sigmas))


def main(argv=None):
    args = parse_args(argv)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="search_quality_")
    os.makedirs(work_dir, exist_ok=True)
    try:
        cells = [("enas", "search (controller)",
                  search(args, work_dir, "enas", shlex.split(args.enas_args))),
                 ("rs-ws", "random search + weight sharing",
                  search(args, work_dir, "random", ["--random_search"]))]
        rng = np.random.default_rng(args.seed)
        cells += [("random_{}".format(i), "random", search_space.random_arc_string(args.num_cells, rng))
                  for i in range(args.num_random)]
        rows = [(name, source, arc) + retrained(args, work_dir, arc) for name, source, arc in cells]
        print_table(rows)
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
