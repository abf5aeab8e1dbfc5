"""How much of a controller reward is the cell, how much the batch? A finished search's shared
weights score its controller's cells on reward batches of B valid images and on the whole set.

    python bench/reward_noise.py SEARCH_DIR [SEARCH_DIR ...] [--num_arcs 16] [--num_batches 8]
        [--batch_sizes 64,256] [--step N] [--num_threads 1]

For each search (the output_dir of main_controller_child_trainer.py; its latest checkpoint, the
shared weights and controller as the search ended, or model.ckpt-N with --step N):
1. samples --num_arcs cells from its controller (what a controller update compares);
2. scores each on the whole valid set with the shared weights, as the final scoring does: s [N];
3. scores each on --num_batches reward batches of each size B, drawn as a search draws them
   (reward.reward_batch; BN on the batch's own statistics, as the search's reward): r [R, N];
4. prints per B:
   - cells sd: the spread of s over the cells (the signal a reward should carry);
   - noise: the sd of one reward about the cell's whole-set score (r - s over batches, the mean
     over cells), and with common batches (the cell's reward minus the batch's mean over the
     cells, about s minus its mean): the noise --controller_common_reward_batch leaves;
   - rho own / rho common: Spearman's rho between the cells' rewards and s, each cell on its own
     batch (the original reward) or all on one batch (common random numbers), mean over batches.
A larger reward batch pays where it adds rho that a common batch does not already give.
"""
import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

from ranking import spearman_rho  # noqa: E402

# run_flags.json entries that are not flags of a search's command line.
NOT_FLAGS = ("mode", "num_classes", "child_fixed_arc")
BATCH_KEY_OFFSET = 1 << 30  # reward batches keyed apart from any search's updates


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("search_dirs", nargs="+", help="finished searches' output_dirs")
    p.add_argument("--num_arcs", type=int, default=16, help="cells sampled from each controller (N)")
    p.add_argument("--num_batches", type=int, default=8, help="reward batches of each size (R)")
    p.add_argument("--batch_sizes", default="64,256", help="reward batch sizes B, comma-separated")
    p.add_argument("--step", type=int, default=None,
                   help="the checkpoint model.ckpt-STEP of each search (unset: its latest)")
    p.add_argument("--num_threads", type=int, default=1, help="TensorFlow threads")
    args = p.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    return args


def search_argv(search_dir, num_threads):
    """The command-line flags that rebuild the graph of the search in search_dir: its
    run_flags.json (the shaping and data flags), its output_dir and num_threads."""
    with open(os.path.join(search_dir, "run_flags.json")) as f:
        saved = json.load(f)
    argv = []
    for name, value in saved.items():
        if name in NOT_FLAGS or value is None:
            continue
        argv += ["--{}{}".format("" if value else "no", name)] if isinstance(value, bool) else [
            "--{}".format(name), str(value)]
    return argv + ["--output_dir", search_dir, "--num_threads", str(num_threads)]


def noise_table(whole, rewards):
    """The figures of one batch size. whole: float [N] each cell's whole-set score; rewards:
    float [R, N] cell n's reward on batch r. Returns a dict: cells_sd, noise_own, noise_common,
    rho_own (cell n on batch (r + n) % R), rho_common (all cells on batch r)."""
    num_batches, num_arcs = rewards.shape
    own = np.array([[rewards[(r + n) % num_batches, n] for n in range(num_arcs)] for r in range(num_batches)])
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    return {"cells_sd": float(np.std(whole)),
            "noise_own": float(np.mean(np.std(rewards - whole, axis=0))),
            "noise_common": float(np.mean(np.std(centred - (whole - whole.mean()), axis=0))),
            "rho_own": float(np.mean([spearman_rho(row, whole) for row in own])),
            "rho_common": float(np.mean([spearman_rho(row, whole) for row in rewards]))}


def measure(search_dir, args, flags):
    """{"whole": [N], B: float [R, N] for each B} of the search in search_dir (steps 1-3).
    flags: absl's FLAGS with the search's flags defined (enas_flags.define_flags)."""
    import tensorflow.compat.v1 as tf
    import checkpoints
    import graph as graph_lib
    import reward as reward_lib
    import scoring
    import trainer
    flags.unparse_flags()
    flags(["reward_noise"] + search_argv(search_dir, args.num_threads))
    data = trainer.read_data(flags)
    with tf.Graph().as_default():
        g = graph_lib.build(flags, data, None)
        with tf.Session(config=graph_lib.session_config(flags, search=True)) as sess:
            prefix = checkpoints.latest(search_dir) if args.step is None else os.path.join(
                search_dir, "{}-{}".format(checkpoints.PREFIX, args.step))
            checkpoints.restore(sess, g.saver, prefix, search_dir)
            arcs = [sess.run(g.controller.sample_arc, {g.sample_key: reward_lib.sample_key_of(
                reward_lib.CONTROLLER_KIND, BATCH_KEY_OFFSET + n)}) for n in range(args.num_arcs)]
            found = {"whole": np.array(scoring.score_arcs(sess, g, len(data["labels"]["valid"]), arcs))}
            seed = int(sess.run(g.cell_seed))
            for size in args.batch_sizes:
                found[size] = np.array([[batch_reward(sess, g, arc, reward_lib.reward_batch(
                    data, size, seed, reward_lib.sample_key_of(reward_lib.UPDATE_BATCH_KIND, BATCH_KEY_OFFSET + r)))
                    for arc in arcs] for r in range(args.num_batches)])
    return found


def batch_reward(sess, g, arc, batch):
    """The accuracy (float) of arc ((normal, reduce) int arrays) on batch ((images, labels):
    reward.reward_batch) with the shared weights in sess: the reward a search gives it."""
    images, labels = batch
    return float(sess.run(g.sampled_valid_acc, {g.eval_images: images, g.eval_labels: labels,
                                                g.eval_arc[0]: arc[0], g.eval_arc[1]: arc[1]}))


def print_report(name, found, batch_sizes):
    """One line per batch size of noise_table's figures."""
    print("{}: {} cells, whole-set score {:.3f}-{:.3f}".format(
        name, len(found["whole"]), found["whole"].min(), found["whole"].max()))
    for size in batch_sizes:
        t = noise_table(found["whole"], found[size])
        print("  B = {:<5d} cells sd {:.4f}  noise own {:.4f} common {:.4f}  rho own {:+.2f} common {:+.2f}".format(
            size, t["cells_sd"], t["noise_own"], t["noise_common"], t["rho_own"], t["rho_common"]))


def main(argv=None):
    args = parse_args(argv)
    import tensorflow.compat.v1 as tf
    import enas_flags
    tf.disable_v2_behavior()
    tf.enable_resource_variables()
    enas_flags.define_flags("search")
    for search_dir in args.search_dirs:
        print_report(search_dir, measure(search_dir, args, enas_flags.FLAGS), args.batch_sizes)


if __name__ == "__main__":
    main()
