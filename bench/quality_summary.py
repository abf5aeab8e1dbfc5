"""The tables of bench/search_quality.py's results: one seed's, and a paired comparison over seeds.

    python bench/quality_summary.py WORK_DIR_OR_JSON... [--metric test|valid]

search_quality.py writes one seed's result into its --work_dir as quality_seed{S}_{KEY}.json,
KEY the cache key of what every seed's run shares (the retraining's and the random search's
flags as they resolve, the data, --num_random; bench/cache_key.py). For each KEY among the
files given (a folder: every quality_seed*.json in it), this prints:
  the cells x seeds table: each cell's retrained accuracy (--metric) and, in brackets, its
  margin over that seed's random cells' mean in units of their standard deviation (sd);
  a paired comparison over seeds of each searched or reference cell against the random cells'
  mean, the random search's pick (rs-ws), the first ENAS variant's pick and the authors' cell:
  the mean margin (accuracy difference) over the seeds holding both, its sd, the same in units of
  each seed's random sd, and wins/n (a tie, e.g. the same cell, is no win).

A result is {"seed": S, "key": KEY, "args": {flag: value}, "rows": [row, ...]}, a row
{"name", "source", "defined_by", "arc", "valid", "test"}: source "random" (a uniform cell),
"rs-ws", "enas" or "reference"; defined_by what makes a row the same row in every seed (an ENAS
variant's flags, a reference's arc).
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from errors import UserError  # noqa: E402

METRICS = ("valid", "test")
RANDOM = "random mean"  # the random cells' mean, as a baseline
AUTHORS = "ref:authors"


# ------------------------------------------------------------------------------ statistics
def sd(values):
    """Sample standard deviation (n - 1) of values; nan for fewer than two."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def in_sds(margin, scale):
    """margin in units of scale (a random sd); nan when scale is 0 or nan."""
    return margin / scale if scale > 0 else float("nan")


def random_stats(result, metric):
    """(mean, sd, best) of the random cells' accuracies (metric) in one seed's result."""
    accs = [row[metric] for row in result["rows"] if row["source"] == "random"]
    return float(np.mean(accs)), sd(accs), float(np.max(accs))


def accuracy(result, name, metric):
    """The retrained accuracy (metric) of the row named name (RANDOM: the random cells' mean) in
    one seed's result; None when it has no such row."""
    if name == RANDOM:
        return random_stats(result, metric)[0]
    return next((row[metric] for row in result["rows"] if row["name"] == name), None)


def paired_margins(results, name, baseline, metric):
    """(margins, margins in random sds): float arrays over the results (seeds) holding both name
    and baseline, margin = accuracy of name - accuracy of baseline."""
    margins, scaled = [], []
    for result in results:
        a, b = accuracy(result, name, metric), accuracy(result, baseline, metric)
        if a is not None and b is not None:
            margins.append(a - b)
            scaled.append(in_sds(a - b, random_stats(result, metric)[1]))
    return np.array(margins), np.array(scaled)


def spread(margins):
    """(mean, sd, wins, n) of margins over seeds; wins: the margins > 0."""
    return float(np.mean(margins)), sd(margins), int(np.sum(np.asarray(margins) > 0)), len(margins)


# ------------------------------------------------------------------------------- results
def row_names(results):
    """The names of the rows that are not random cells, in order of first appearance."""
    names = [row["name"] for r in results for row in r["rows"] if row["source"] != "random"]
    return list(dict.fromkeys(names))


def baselines(results):
    """The rows each cell is compared with, those the results hold: the random cells' mean, rs-ws,
    the first ENAS variant and the authors' cell."""
    first_enas = [row["name"] for r in results for row in r["rows"] if row["source"] == "enas"][:1]
    return [b for b in [RANDOM, "rs-ws"] + first_enas + [AUTHORS] if b == RANDOM or b in row_names(results)]


def check_rows_alike(results):
    """UserError when a row name stands for different things in two seeds (another ENAS variant's
    flags, another reference arc under the same name)."""
    seen = {}
    for r in results:
        for row in r["rows"]:
            name, defined_by = row["name"], row["defined_by"]
            if row["source"] != "random" and seen.setdefault(name, defined_by) != defined_by:
                raise UserError("{} is '{}' in one seed and '{}' in seed {}; rerun the seeds with the "
                                "same variants".format(name, seen[name], defined_by, r["seed"]))


def result_files(paths):
    """The files paths name (a folder: its quality_seed*.json); UserError for a path that is
    neither, or no file at all."""
    files = []
    for path in paths:
        if not os.path.exists(path):
            raise UserError("{}: no such file or folder".format(path))
        is_dir = os.path.isdir(path)
        files += sorted(glob.glob(os.path.join(path, "quality_seed*.json"))) if is_dir else [path]
    if not files:
        raise UserError("{}: no quality_seed*.json (bench/search_quality.py --work_dir writes "
                        "them)".format(" ".join(paths)))
    return files


def load_results(paths):
    """{key: [result, ...] by seed} of the result_files of paths; UserError for two results of one
    seed under one key."""
    groups = {}
    for path in result_files(paths):
        with open(path) as f:
            result = json.load(f)
        group = groups.setdefault(result["key"], {})
        if result["seed"] in group:
            raise UserError("{}: a second result of seed {} (key {})".format(
                path, result["seed"], result["key"][:12]))
        group[result["seed"]] = result
    return {key: [group[s] for s in sorted(group)] for key, group in groups.items()}


# -------------------------------------------------------------------------------- tables
def print_seed(result):
    """One seed's table: each cell's retrained valid and test accuracy and its margin over the
    random cells' mean in their sds; the random cells' mean, sd and best; what each row is."""
    stats = {m: random_stats(result, m) for m in METRICS}
    print("\n{:<18} {:>7} {:>7} {:>8} {:>8}  arc".format("cell", "valid", "test", "valid/sd", "test/sd"))
    for row in result["rows"]:
        margins = [in_sds(row[m] - stats[m][0], stats[m][1]) for m in METRICS]
        print("{:<18} {:>7.4f} {:>7.4f} {:>+8.2f} {:>+8.2f}  {}".format(
            row["name"], row["valid"], row["test"], *margins, row["arc"]))
    n = sum(row["source"] == "random" for row in result["rows"])
    for m in METRICS:
        print("random cells, {}: mean {:.4f}, sd {:.4f}, best {:.4f} (n = {})".format(m, *stats[m], n))
    print("/sd: (accuracy - the random cells' mean) / their sd")
    for row in result["rows"]:
        if row["source"] in ("enas", "rs-ws"):
            print("{}: search with {}".format(row["name"], row["defined_by"] or "no extra flags"))


def cell_text(result, name, metric):
    """'0.8123 (+1.23)': name's accuracy and its margin over the random mean in random sds."""
    acc = accuracy(result, name, metric)
    if acc is None:
        return "-"
    mean, scale, _ = random_stats(result, metric)
    return "{:.4f} ({:+.2f})".format(acc, in_sds(acc - mean, scale))


def print_seeds_table(results, metric):
    """The cells x seeds table of metric: the random cells' mean, sd and best, then each row."""
    print("\n{:<18}".format(metric + " accuracy") + "".join("{:>16}".format("seed {}".format(r["seed"]))
                                                             for r in results))
    for label, i in (("random mean", 0), ("random sd", 1), ("random best", 2)):
        values = [random_stats(r, metric)[i] for r in results]
        print("{:<18}".format(label) + "".join("{:>16.4f}".format(v) for v in values))
    for name in row_names(results):
        print("{:<18}".format(name) + "".join("{:>16}".format(cell_text(r, name, metric)) for r in results))


def print_paired(results, metric):
    """Each row against each baseline over the seeds: mean margin, its sd, the same in random
    sds, wins/n."""
    print("\npaired over seeds ({}; margin = cell - baseline, /sd: in that seed's random sd)".format(
        metric))
    print("{:<18} {:<18} {:>8} {:>7} {:>8} {:>7} {:>6}".format(
        "cell", "against", "margin", "sd", "/sd", "sd", "wins"))
    for baseline in baselines(results):
        for name in row_names(results):
            margins, scaled = paired_margins(results, name, baseline, metric)
            if name != baseline and len(margins):
                mean, spread_sd, wins, n = spread(margins)
                print("{:<18} {:<18} {:>+8.4f} {:>7.4f} {:>+8.2f} {:>7.2f} {:>6}".format(
                    name, baseline, mean, spread_sd, *spread(scaled)[:2], "{}/{}".format(wins, n)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="+", help="search_quality.py work dirs or their quality_seed*.json")
    p.add_argument("--metric", choices=METRICS, default="test", help="the accuracy compared")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        groups = load_results(args.paths)
        for results in groups.values():
            check_rows_alike(results)
    except UserError as e:
        print("error: {}".format(e), file=sys.stderr)
        raise SystemExit(2)
    for key, results in groups.items():
        a = results[0]["args"]
        print("\n== key {}: {} seeds; search {} epochs '{}', retraining {} epochs '{}', {} random "
              "cells".format(key[:12], len(results), a["search_epochs"], a["search_args"],
                             a["retrain_epochs"], a["retrain_args"], a["num_random"]))
        print_seeds_table(results, args.metric)
        print_paired(results, args.metric)


if __name__ == "__main__":
    main()
