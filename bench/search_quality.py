"""Does the search beat random? ENAS against random search with weight sharing, retrained alike.

    python bench/search_quality.py --data_dir DIR [--img_size 32 --channel 1]
        [--search_epochs 10] [--retrain_epochs 10] [--num_random 4] [--seed 0]
        [--search_args "--batch_size 64 ..."] [--enas_args "--controller_lr 0.01 ..."]
        [--enas_variants "default=;lr=--controller_lr 0.01"] [--reference_arcs "NAME=ARC;..."]
        [--retrain_args "--child_num_layers 6 ..."] [--work_dir DIR]

Runs, each as the command a user would type:
  (a) the search (main_controller_child_trainer.py) for --search_epochs, once per ENAS variant
      (--enas_variants NAME=FLAGS; its extra flags --enas_args, then FLAGS);
  (b) the same search with --random_search (cells drawn uniformly, controller never trained);
  both end with the search's final stage (--final_train_top_k, default 3) unless the flags turn
  it off, and such a search runs as a copy of the same search with --final_train_top_k 0 that
  runs only its end (so a variant "shared=--final_train_top_k 0" costs no search of its own);
  (c) retrains (main_child_trainer.py) the best cell of each (a), the best cell of (b),
      --num_random cells drawn uniformly at random and the --reference_arcs cells (default: the
      authors' and the PNG fork's published CIFAR-10 cells, B = 5; skipped with a note for
      another --num_cells), all with the same flags, budget and seed.
Prints one table: each cell's retrained valid and test accuracy and its margin over the mean of
the random cells in units of their standard deviation (sd), and the random cells' mean, sd and
best; writes it as JSON to --work_dir/quality_seed{S}_{KEY}.json (KEY: the cache key of the
retraining's and random search's flags but the seed, the data and --num_random), which
bench/quality_summary.py compares over seeds.
DIR holds train/, valid/ and test/ class folders (bench/make_dataset.py makes harder ones than the
shipped digits). Outputs go to --work_dir (default: a temp folder, deleted at the end); rerun
with the same --work_dir, it reuses the searches and retrainings it already has with the same
flags as each run resolves them (defaults included) and the same data (bench/cache_key.py), so a
variant (other --search_args) costs its own searches and their cells' retraining only, and a new
ENAS variant one search and one retraining. Every run's flags are checked before the first runs.
"""
import argparse
import hashlib
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
import progress  # noqa: E402
import quality_summary  # noqa: E402
import search_space  # noqa: E402
from errors import UserError  # noqa: E402

# the cell of the authors' README and scripts/cifar10_micro_final.sh (melodyguan/enas)
AUTHORS_ARC = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
REFERENCE_ARCS = "authors={};png_fork={}".format(AUTHORS_ARC, search_space.CIFAR10_ARC)


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
    p.add_argument("--enas_args", default="", help="extra flags of the ENAS search (controller) only "
                                                    "(search_quality.py: of each --enas_variants)")
    p.add_argument("--retrain_args", default="", help="extra flags of every retraining")
    p.add_argument("--work_dir", help="keep every run's output_dir here")
    return p


def parse_args(argv=None):
    p = run_args_parser(__doc__, img_size=32, channel=1, num_cells=5, retrain_epochs=10)
    p.add_argument("--num_random", type=int, default=4, help="random cells retrained")
    p.add_argument("--enas_variants", default="default=",
                   help="NAME=FLAGS pairs separated by ';': an ENAS search per variant, its extra flags "
                        "--enas_args then FLAGS (e.g. 'default=;lr=--controller_lr 0.01'); the others "
                        "are compared with the first; '' for none")
    p.add_argument("--reference_arcs", default=REFERENCE_ARCS,
                   help="NAME=ARC pairs separated by ';' (ARC: an arc string or a file holding one): "
                        "cells retrained alike (default: the authors' and the PNG fork's published "
                        "cells); those whose B is not --num_cells are skipped; '' for none")
    args = p.parse_args(argv)
    if args.num_random < 2:
        raise UserError("--num_random must be at least 2 (their sd is the unit of the margins), "
                        "got {}".format(args.num_random))
    args.enas_variants = parse_named("--enas_variants", args.enas_variants, shlex.split)
    args.reference_arcs = parse_named("--reference_arcs", args.reference_arcs, reference_arc)
    return args


def parse_named(flag, text, value_of):
    """[(NAME, value_of(VALUE))] of text 'NAME=VALUE;NAME=VALUE' ('' for none). UserError naming
    flag for an item without '=', a NAME not of letters, digits, '_' and '-', a NAME given twice,
    or a VALUE value_of rejects (ValueError or UserError)."""
    pairs = []
    for item in filter(str.strip, text.split(";")):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not re.fullmatch(r"[\w-]+", name):
            raise UserError("{}: expected NAME=VALUE pairs separated by ';' (NAME of letters, digits, "
                            "_ and -), got '{}'".format(flag, item.strip()))
        if name in dict(pairs):
            raise UserError("{}: the name {} is given twice".format(flag, name))
        try:
            pairs.append((name, value_of(value)))
        except (ValueError, UserError) as e:
            raise UserError("{} {}: {}".format(flag, name, e))
    return pairs


def reference_arc(text):
    """The arc string text is or names (a file), normalised, checked as a cell of its own B
    (8 * B integers); UserError otherwise."""
    try:
        arc = search_space.read_arc_text(text)
        pieces = arc.split()
        if not pieces or len(pieces) % 8:
            raise UserError("expected 8 * B integers (B nodes per cell), got {}".format(len(pieces)))
        return search_space.arc_to_string(*search_space.parse_arc(arc, len(pieces) // 8))
    except UserError as e:  # search_space's errors name --child_fixed_arc
        raise UserError(str(e).replace("--child_fixed_arc ", ""))


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
    """Every flag of a search but its output_dir: the data, cells and seed, --search_epochs,
    --search_args and extra (e.g. --random_search; last, so a variant's flag wins)."""
    return common_flags(args) + ["--num_epochs", str(args.search_epochs)] + shlex.split(
        args.search_args) + extra


FINAL_STAGE_FLAGS = ("--final_train_top_k", "--final_train_epochs")


def search_dir(args, work_dir, kind, extra):
    """Runs a search into a folder of work_dir named by kind and the cache key of its flags
    (search_flags, resolved) and data (cache_key.run_key), unless that folder already holds a
    finished one; returns the folder. A search with a final stage (the default, or
    FINAL_STAGE_FLAGS) starts from a copy of the same search with --final_train_top_k 0 (run
    first if need be) and so runs only its end: the stage does not change the search before it."""
    flags = search_flags(args, extra)
    key = cache_key.run_key("search", flags)
    out = os.path.join(work_dir, "search_{}_seed{}_{}".format(kind, args.seed, key[:12]))
    if not os.path.exists(os.path.join(out, "best_arc.txt")):
        without_stage = without_flags(extra, FINAL_STAGE_FLAGS) + ["--final_train_top_k", "0"]
        if cache_key.run_key("search", search_flags(args, without_stage)) != key and not os.path.exists(out):
            shutil.copytree(search_dir(args, work_dir, kind, without_stage), out,
                            ignore=shutil.ignore_patterns("best_arc*"))
        run("main_controller_child_trainer.py", flags + ["--output_dir", out], out + ".log")
    return out


def without_flags(extra, names):
    """extra (a list of command-line words) without the flags named and their values (given as
    '--flag value' or '--flag=value')."""
    kept, skip = [], False
    for word in extra:
        if skip:
            skip = False
        elif word in names:
            skip = True
        elif word.split("=")[0] not in names:
            kept.append(word)
    return kept


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
    evaluation, from its progress.tsv (a rerun of a retraining stopped after its last epoch, while
    exporting, prints none)."""
    run("main_child_trainer.py", flags + ["--output_dir", out], out + ".log")
    log = progress.ProgressLog(out)
    return tuple(float(log.series(name)[1][-1]) for name in ("valid_acc", "test_acc"))


def enas_flags(args, flags):
    """The extra flags of an ENAS variant's search: --enas_args, then the variant's flags."""
    return shlex.split(args.enas_args) + flags


def setup_key(args):
    """The cache key of what every seed's table shares: the retraining's and the random search's
    flags (resolved, --seed left out, the arc empty) and data, and --num_random. Resolving them
    and the ENAS variants' search flags here stops a flag no run would accept (SystemExit naming
    it) before the first run."""
    for _, flags in args.enas_variants:
        cache_key.run_key("search", search_flags(args, enas_flags(args, flags)))
    any_seed = argparse.Namespace(**dict(vars(args), seed=0))
    keys = [cache_key.run_key("final", retrain_flags(any_seed, "")),
            cache_key.run_key("search", search_flags(any_seed, ["--random_search"])), str(args.num_random)]
    return hashlib.sha1(" ".join(keys).encode()).hexdigest()


def reference_cells(args):
    """[(name, source, defined_by, arc)] of the --reference_arcs of B = --num_cells; prints a
    note for each other."""
    cells = []
    for name, arc in args.reference_arcs:
        if len(arc.split()) == 8 * args.num_cells:
            cells.append(("ref:" + name, "reference", arc, arc))
        else:
            print("note: reference {} not retrained: its B is {}, --num_cells {}".format(
                name, len(arc.split()) // 8, args.num_cells))
    return cells


def searched_cells(args, work_dir):
    """[(name, source, defined_by, arc)] of the random search's pick and each ENAS variant's."""
    cells = [("rs-ws", "rs-ws", "--random_search", search(args, work_dir, "random", ["--random_search"]))]
    for name, flags in args.enas_variants:
        extra = enas_flags(args, flags)
        cells.append(("enas:" + name, "enas", shlex.join(extra), search(args, work_dir, "enas", extra)))
    return cells


def seed_result(args, work_dir, key):
    """One seed's result (quality_summary's docstring): --num_random uniform cells (drawn from
    --seed), the searches' picks and the references, each retrained: the picks and references
    first, so that a run stopped before its end has cached what compares the searches."""
    references = reference_cells(args)
    rng = np.random.default_rng(args.seed)
    cells = [("random_{}".format(i), "random", "", search_space.random_arc_string(args.num_cells, rng))
             for i in range(args.num_random)] + searched_cells(args, work_dir) + references
    accs = {cell[3]: retrained(args, work_dir, cell[3])
            for cell in sorted(cells, key=lambda cell: cell[1] == "random")}
    fields = ("name", "source", "defined_by", "arc", "valid", "test")
    rows = [dict(zip(fields, cell + accs[cell[3]])) for cell in cells]
    return dict(seed=args.seed, key=key, args=vars(args), rows=rows)


def main(argv=None):
    try:
        args = parse_args(argv)
    except UserError as e:
        print("error: {}".format(e), file=sys.stderr)
        raise SystemExit(2)
    key = setup_key(args)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="search_quality_")
    os.makedirs(work_dir, exist_ok=True)
    try:
        result = seed_result(args, work_dir, key)
        path = os.path.join(work_dir, "quality_seed{}_{}.json".format(args.seed, key[:12]))
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        quality_summary.print_seed(result)
        if args.work_dir:
            print("(written to {}; bench/quality_summary.py {} compares the seeds)".format(path, work_dir))
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
