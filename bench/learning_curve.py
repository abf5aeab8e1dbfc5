"""Learning curve of the shared-weight child: how fast does the search's child learn?

    python bench/learning_curve.py [--data_dir DIR] [--steps 1000 --eval_every 100]
                                   [--sampler uniform|controller] [--fixed_arc ARC | --no_fixed]
                                   [--set child_grad_bound=0 ...]

Trains the search child for --steps child steps on a new cell every step: drawn uniformly at
random (--sampler uniform, random search with weight sharing), or by the controller, which then
also trains for controller_train_steps updates every --controller_every child steps (--sampler
controller; with --set uniform_warmup_epochs=N, uniform cells and no controller phase in the
first N epochs, as in the search). Every --eval_every steps it scores --eval_arcs cells drawn by
the same sampler with the shared weights on --eval_images valid images (one fixed random subset)
and prints their mean valid accuracy.
Then it trains one fixed cell (--fixed_arc, default the MNIST cell of the README) alone, with the
retraining graph and the search's flags, for the same steps, and prints the same figure for it.

Without --data_dir it generates an MNIST-sized set of MNIST-like digits (bench/make_dataset.py:
55,000 train, 5,000 valid, 1,000 test, 28x28 gray, read at --img_size 32), so that the cosine LR
schedule has MNIST's epoch length. Flags are the search defaults of enas_flags.py; --set NAME=VALUE
overrides one (e.g. --set child_grad_bound=0 --set batch_size=64).
The last lines are a table: step, shared child (mean of sampled cells), fixed cell.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (ROOT, os.path.join(ROOT, "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import utils  # noqa: E402  (first: imports TensorFlow quietly)
import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

import data_utils  # noqa: E402
import graph as graph_lib  # noqa: E402
import reward as reward_lib  # noqa: E402
import search_space  # noqa: E402
import make_dataset  # noqa: E402
from machine import cpu_model  # noqa: E402
from throughput import SEARCH_DEFAULTS  # noqa: E402



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", help="folder with train/, valid/, test/ class folders")
    p.add_argument("--img_size", type=int, default=32)
    p.add_argument("--channel", type=int, default=1, choices=(1, 3))
    p.add_argument("--steps", type=int, default=1000, help="child steps")
    p.add_argument("--eval_every", type=int, default=100)
    p.add_argument("--eval_arcs", type=int, default=4, help="cells scored per evaluation")
    p.add_argument("--eval_images", type=int, default=1000, help="valid images per cell score")
    p.add_argument("--sampler", choices=("uniform", "controller"), default="uniform")
    p.add_argument("--controller_every", type=int, default=100,
                   help="child steps between controller phases (--sampler controller)")
    p.add_argument("--fixed_arc", default=search_space.MNIST_ARC)
    p.add_argument("--no_fixed", action="store_true", help="skip the fixed cell")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override one of the search's flags")
    return p.parse_args(argv)


def make_flags(args):
    """The search defaults, with --seed and every --set NAME=VALUE applied (typed as the default)."""
    flags = dict(SEARCH_DEFAULTS, seed=args.seed, random_search=args.sampler == "uniform")
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in flags:
            raise SystemExit("error: --set {}: not a search flag".format(name))
        old = flags[name]
        flags[name] = (None if value == "None" else value.lower() in ("1", "true") if
                       isinstance(old, bool) else type(old)(value) if old is not None else float(value))
    return argparse.Namespace(**flags)


def load_data(args, tmp):
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = os.path.join(tmp, "digits")
        make_dataset.make_dataset(data_dir, (55000, 5000, 1000), "digits", 28, args.seed)
    dirs = [os.path.join(data_dir, s) for s in data_utils.SPLITS]
    data = data_utils.read_data(*dirs, channel=args.channel, img_size=args.img_size, n_aug_img=1)
    n_valid = len(data["labels"]["valid"])  # score cells on a random valid subset (all classes)
    keep = np.sort(np.random.default_rng(args.seed).permutation(n_valid)[:args.eval_images])
    data["images"]["valid"] = data["images"]["valid"][keep]
    data["labels"]["valid"] = data["labels"]["valid"][keep]
    return data


def open_session(flags, data, fixed_arc):
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(flags.seed)
        g = graph_lib.build(flags, data, fixed_arc)
    sess = tf.Session(graph=graph, config=graph_lib.session_config(flags))
    sess.run(g.init_op)
    return g, sess


def valid_accuracy(sess, g, data, arc=None):
    """Accuracy on the (subset) valid split; arc = (normal, reduce) fed to a search graph."""
    feed = g.feed(sess, "valid")
    if arc is not None:
        feed.update({g.eval_arc[0]: arc[0], g.eval_arc[1]: arc[1]})
    sess.run(g.eval_init["valid"])
    correct = 0
    for _ in range(-(-len(data["labels"]["valid"]) // graph_lib.EVAL_BATCH_SIZE)):
        correct += sess.run(g.eval_correct, feed)
    return correct / float(len(data["labels"]["valid"]))


def train_fetches(g):
    t = g.train
    return {"loss": t.loss, "grad_norm": t.grad_norm, "train_acc": t.train_acc, "train_op": t.train_op}


def controller_phase(sess, g, flags):
    """controller_train_steps updates of controller_num_aggregate samples, as in the search."""
    for _ in range(flags.controller_train_steps * flags.controller_num_aggregate):
        sess.run(g.controller.train_op, reward_lib.feed(sess, g))


def shared_curve(args, flags, data):
    """[(step, mean valid acc of sampled cells, train loss)] of the search child."""
    g, sess = open_session(flags, data, None)
    curve, losses, t0 = [], [], time.time()
    fetches = train_fetches(g)
    warmup_steps = flags.uniform_warmup_epochs * g.num_train_batches  # uniform cells, no controller
    for step in range(1, args.steps + 1):
        losses.append(sess.run(fetches)["loss"])
        if args.sampler == "controller" and step % args.controller_every == 0 and step > warmup_steps:
            controller_phase(sess, g, flags)
        if step % args.eval_every == 0:
            arcs = [sess.run(g.sampler.sample_arc) for _ in range(args.eval_arcs)]
            acc = float(np.mean([valid_accuracy(sess, g, data, a) for a in arcs]))
            curve.append((step, acc, float(np.mean(losses[-args.eval_every:]))))
            print("shared  step {:5d}  mean valid acc of {} sampled cells {:.4f}  loss {:.3f}  "
                  "({:.0f} s)".format(step, len(arcs), acc, curve[-1][2], time.time() - t0),
                  flush=True)
    sess.close()
    return curve


def fixed_curve(args, flags, data):
    """[(step, valid acc, train loss)] of one fixed cell trained alone."""
    arc = search_space.parse_arc(args.fixed_arc, flags.child_num_cells)
    g, sess = open_session(flags, data, arc)
    curve, losses, t0 = [], [], time.time()
    fetches = train_fetches(g)
    for step in range(1, args.steps + 1):
        losses.append(sess.run(fetches)["loss"])
        if step % args.eval_every == 0:
            acc = valid_accuracy(sess, g, data)
            curve.append((step, acc, float(np.mean(losses[-args.eval_every:]))))
            print("fixed   step {:5d}  valid acc {:.4f}  loss {:.3f}  ({:.0f} s)".format(
                step, acc, curve[-1][2], time.time() - t0), flush=True)
    sess.close()
    return curve


def main(argv=None):
    args = parse_args(argv)
    utils.probe_devices_quietly()
    tf.get_logger().setLevel("ERROR")  # no deprecation notice
    tf.disable_v2_behavior()
    tf.enable_resource_variables()
    flags = make_flags(args)
    print("CPU: {}; sampler {}; {}".format(cpu_model(), args.sampler, " ".join(args.set) or
                                            "search defaults"), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = load_data(args, tmp)
    shared = shared_curve(args, flags, data)
    fixed = [] if args.no_fixed else fixed_curve(args, flags, data)
    print("\n{:>6}  {:>22}  {:>10}".format("step", "shared (sampled mean)", "fixed cell"))
    for k, (step, acc, _) in enumerate(shared):
        fixed_acc = "{:.4f}".format(fixed[k][1]) if k < len(fixed) else "-"
        print("{:>6}  {:>22.4f}  {:>10}".format(step, acc, fixed_acc))


if __name__ == "__main__":
    main()
