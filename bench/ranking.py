"""How well do the shared weights rank cells? Their scores against the cells retrained alone.

    python bench/ranking.py --data_dir DIR [--img_size 16 --channel 3] [--num_cells 3]
        [--num_candidates 12] [--seed 0] [--search_epochs 10] [--retrain_epochs 5]
        [--sampler uniform|controller] [--score accuracy|loss] [--finetune_steps 0]
        [--search_args "--child_num_layers 2 ..."] [--enas_args "--uniform_warmup_epochs 3"]
        [--retrain_args "..."] [--work_dir DIR]

1. trains the shared child as a search does (main_controller_child_trainer.py; --sampler uniform
   adds --random_search: cells drawn uniformly, the controller never trained; --sampler
   controller adds --enas_args: the search_quality bench's ENAS search with the same flags);
2. draws --num_candidates cells uniformly from --seed (the same cells for every variant run with
   that seed and --num_cells);
3. scores each with the shared weights as the search's final scoring does (scoring.score_arcs:
   the whole valid set; --score loss: minus the mean valid cross-entropy instead of the
   accuracy), after --finetune_steps training steps on that cell alone when set (the
   shared weights are restored before each cell, so every cell starts from the same weights);
4. retrains each alone with main_child_trainer.py at one budget (cached in --work_dir by every
   flag as the run resolves it and the data, bench/cache_key.py, so variants that share cells
   and budget retrain nothing twice; the search of step 1 is cached alike); with
   --retrain_seeds N, once per seed, and takes the mean;
5. prints a row per cell, Kendall's tau and Spearman's rho between shared score and retrained
   valid accuracy with 95 % bootstrap intervals, and the top-1 regret: the best retrained valid
   accuracy among the cells against that of the cell the shared weights rank first; with N >= 2,
   the tau between two seeds' retrainings, the most any shared score can be expected to reach.
"""
import argparse
import os
import shlex
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

import search_quality  # noqa: E402
import search_space  # noqa: E402


def parse_args(argv=None):
    p = search_quality.run_args_parser(__doc__, img_size=16, channel=3, num_cells=3, retrain_epochs=5)
    p.add_argument("--num_candidates", type=int, default=12, help="uniform cells ranked (K)")
    p.add_argument("--sampler", choices=("uniform", "controller"), default="uniform",
                   help="how the shared child's training cells are drawn")
    p.add_argument("--score", choices=("accuracy", "loss"), default="accuracy",
                   help="shared-weight score: valid accuracy (the search's) or minus valid loss")
    p.add_argument("--finetune_steps", type=int, default=0,
                   help="training steps on each cell alone before it is scored")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the cells")
    p.add_argument("--retrain_seeds", type=int, default=1,
                   help="retrain each cell with seeds --seed .. --seed + N - 1 and rank by the mean; "
                        "N >= 2 also prints the agreement of two retrainings (the noise ceiling)")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ statistics
def ranks(values):
    """Ranks 1..n of values, ties sharing their mean rank."""
    values = np.asarray(values, float)
    order = np.argsort(values, kind="mergesort")
    result = np.empty(len(values))
    result[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        tied = values == v
        result[tied] = result[tied].mean()
    return result


def kendall_tau(x, y):
    """Kendall's tau-b of paired values x, y (ties in either count as neither order)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), 1)
    concordance, nx, ny = (dx * dy)[upper].sum(), (dx != 0)[upper].sum(), (dy != 0)[upper].sum()
    return float(concordance / np.sqrt(nx * ny)) if nx and ny else float("nan")


def spearman_rho(x, y):
    """Spearman's rho: the correlation of the ranks (mean ranks for ties)."""
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def bootstrap_interval(statistic, x, y, resamples, seed=0):
    """95 % percentile interval of statistic(x, y) over resamples of the pairs with replacement
    (resamples where it is undefined, e.g. all ties, are left out)."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, float), np.asarray(y, float)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(x), len(x))
        value = statistic(x[pick], y[pick])
        if np.isfinite(value):
            values.append(value)
    return tuple(np.percentile(values, [2.5, 97.5])) if values else (float("nan"),) * 2


def top1_regret(shared, retrained):
    """Best retrained accuracy minus that of the cell with the best shared score (ties: the
    first); 0 when the shared weights pick the best cell."""
    return float(np.max(retrained) - retrained[int(np.argmax(shared))])


# ---------------------------------------------------------------------------- shared scores
def shared_scores(args, search_dir, arcs):
    """Each arc's score (--score) with the shared weights of the search in search_dir (its latest
    checkpoint), as the search's final scoring computes it; with --finetune_steps, after that
    many training steps on the arc alone, from the same restored weights for every arc."""
    import trainer  # TensorFlow: imported only here
    import enas_flags
    import checkpoints
    import graph as graph_lib
    import scoring
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    tf.enable_resource_variables()
    enas_flags.define_flags("search")
    flags = enas_flags.FLAGS
    flags(["ranking"] + search_argv(args, search_dir))
    data = trainer.read_data(flags)
    parsed = [search_space.parse_arc(arc, args.num_cells) for arc in arcs]
    with tf.Graph().as_default():
        g = graph_lib.build(flags, data, None)
        prefix = checkpoints.latest(search_dir)
        with tf.Session(config=graph_lib.session_config(flags, search=True)) as sess:
            return score_cells(
                parsed, lambda: checkpoints.restore(sess, g.saver, prefix, search_dir),
                lambda arc: finetune(sess, g, arc, args.finetune_steps),
                lambda arc: scoring.score_arcs(sess, g, len(data["labels"]["valid"]), [arc], args.score)[0])


def score_cells(arcs, restore, tune, score):
    """[score(arc)] for each arc, each after restore() (the shared weights as the search left
    them) and tune(arc): no cell's fine-tuning reaches the next cell's score."""
    scores = []
    for arc in arcs:
        restore()
        tune(arc)
        scores.append(score(arc))
    return scores


def finetune(sess, g, arc, steps):
    """steps training steps of the shared child on one cell: arc (normal, reduce) fed to the
    training graph in place of the cell of the step."""
    feed = {g.train.normal_arc: arc[0], g.train.reduce_arc: arc[1]}
    for _ in range(steps):
        sess.run(g.train.train_op, feed)


# ------------------------------------------------------------------------------- the runs
def sampler_run(args):
    """(kind, extra flags) of the search that trains the shared child with --sampler: uniform
    cells are the search_quality bench's random search, the controller its ENAS search; both
    without the final stage (--final_train_top_k 0): the shared child is what is ranked."""
    kind, extra = ("random", ["--random_search"]) if args.sampler == "uniform" else (
        "enas", shlex.split(args.enas_args))
    return kind, extra + ["--final_train_top_k", "0"]


def search_argv(args, search_dir):
    """The flags of the search in search_dir, for this process."""
    return search_quality.search_flags(args, sampler_run(args)[1]) + ["--output_dir", search_dir]


def train_shared_child(args, work_dir):
    """Runs the search (once per work_dir and flags: the search_quality bench's search with the
    same flags is the same run); returns its output_dir."""
    return search_quality.search_dir(args, work_dir, *sampler_run(args))


def retrained_by_seed(args, work_dir, arcs):
    """(valid, test): float arrays [retrain_seeds, K] of each arc retrained alone with each seed
    (search_quality.retrained, cached)."""
    runs = [[search_quality.retrained(argparse.Namespace(**dict(vars(args), seed=args.seed + k)),
                                      work_dir, arc) for arc in arcs]
            for k in range(args.retrain_seeds)]
    return np.array([[r[0] for r in row] for row in runs]), np.array([[r[1] for r in row] for row in runs])


def print_noise_ceiling(valid_by_seed):
    """Kendall tau between the first two seeds' retrained valid accuracies: how well one
    retraining ranks the cells as another does, a ceiling for any shared score's tau."""
    if len(valid_by_seed) >= 2:
        print("retraining noise: Kendall tau {:+.3f} between seeds' retrained valid accuracies "
              "(mean |difference| {:.4f})".format(kendall_tau(valid_by_seed[0], valid_by_seed[1]),
                                                  np.mean(np.abs(valid_by_seed[0] - valid_by_seed[1]))))


def print_report(args, arcs, shared, valid, test):
    print("\nshared score: {}{}".format(args.score, ", after {} fine-tuning steps per cell".format(
        args.finetune_steps) if args.finetune_steps else ""))
    print("{:>4} {:>8} {:>8} {:>8}  arc".format("cell", "shared", "valid", "test"))
    for k in np.argsort(shared, kind="mergesort")[::-1]:
        print("{:>4} {:>8.4f} {:>8.4f} {:>8.4f}  {}".format(k, shared[k], valid[k], test[k], arcs[k]))
    print("\nretrained valid accuracy of the {} cells: mean {:.4f}, std {:.4f}, range {:.4f} to {:.4f}"
          .format(len(arcs), np.mean(valid), np.std(valid, ddof=1), np.min(valid), np.max(valid)))
    for name, statistic in (("Kendall tau", kendall_tau), ("Spearman rho", spearman_rho)):
        lo, hi = bootstrap_interval(statistic, shared, valid, args.bootstrap, args.seed)
        print("{:<13} {:+.3f}  (95 % bootstrap interval {:+.3f} to {:+.3f})".format(
            name, statistic(shared, valid), lo, hi))
    print("top-1 regret  {:.4f}  (best retrained valid {:.4f}; the shared weights' first pick {:.4f})"
          .format(top1_regret(shared, valid), np.max(valid), valid[int(np.argmax(shared))]))


def main(argv=None):
    args = parse_args(argv)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="ranking_")
    os.makedirs(work_dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    arcs = [search_space.random_arc_string(args.num_cells, rng) for _ in range(args.num_candidates)]
    search_dir = train_shared_child(args, work_dir)
    shared = np.array(shared_scores(args, search_dir, arcs))
    valid_by_seed, test_by_seed = retrained_by_seed(args, work_dir, arcs)
    print_report(args, arcs, shared, valid_by_seed.mean(0), test_by_seed.mean(0))
    print_noise_ceiling(valid_by_seed)
    print("(work_dir: {})".format(work_dir))


if __name__ == "__main__":
    main()
