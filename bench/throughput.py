"""Throughput benchmark of the ENAS micro search on the CPU.

    python bench/throughput.py [--img_size 32 --channel 1 --num_images 2000 --child_num_layers 6
                                --child_out_filters 20 --batch_size 128 --steps 20 ...]

Prints (each timing a median over >= --steps runs after --warmup runs):
  search child train step and fixed-arc train step (images/s), both on the same --num_fixed_arcs
  controller-sampled arcs (fed to the search graph, built as fixed graphs; their steps interleaved
  so that a change of machine speed hits both alike), input pipeline alone
  with n_aug_img 2 (images/s), one controller phase (s and share of a child epoch of
  --memory_images images), the time of one search epoch and of 150,
  peak RSS of the real CLI on a generated set of --memory_images images (55,000) and the
  size of its output_dir; the LAST line is `search/fixed throughput ratio: X.XX`.
The flags graph.build reads are a plain namespace holding the search defaults of enas_flags.py
(absl's global FLAGS is not touched).
"""
import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import utils  # noqa: E402  (first: imports TensorFlow quietly)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

import data_utils  # noqa: E402
from machine import cpu_model  # noqa: E402
import graph as graph_lib  # noqa: E402
import reward as reward_lib  # noqa: E402

NUM_CLASSES = 10
MNIST_TRAIN = 55000
CLI = os.path.join(ROOT, "main_controller_child_trainer.py")

# The search defaults of enas_flags.py (define_flags("search")) that graph.build reads.
SEARCH_DEFAULTS = dict(
    data_format="NHWC", batch_size=128, num_epochs=150, seed=None, num_threads=0,
    child_num_layers=6, child_num_cells=5, child_out_filters=20, child_lr_max=0.05,
    child_lr_min=0.0005, child_lr_T_0=10, child_lr_T_mul=2, child_cutout_size=None, child_random_crop_pad=0, child_random_flip=False,
    child_grad_bound=5.0, child_clip_mode="global", child_keep_prob=0.9,
    child_drop_path_keep_prob=0.6, child_l2_reg=1e-4,
    child_use_aux_heads=True, controller_lr=0.0035, controller_l2_reg=0.0, controller_bl_dec=0.99,
    controller_tanh_constant=1.10, controller_op_tanh_reduce=2.5, controller_temperature=None,
    controller_entropy_weight=1e-4, controller_num_aggregate=10, controller_train_steps=30,
    controller_advantage_norm=True, controller_reward_batch_size=None, controller_baseline="ema",
    uniform_warmup_epochs=0, random_search=False, child_shared_init="aligned", mixed_precision="none",
    child_recompute="none")


def parse_args(argv=None):
    """The benchmark's own command line (argparse, independent of absl FLAGS)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--img_size", type=int, default=32)
    p.add_argument("--channel", type=int, default=1, choices=(1, 3))
    p.add_argument("--num_images", type=int, default=2000, help="generated train set size")
    p.add_argument("--child_num_layers", type=int, default=6)
    p.add_argument("--child_out_filters", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="measured steps (>= 20) after warm-up")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (>= 3)")
    p.add_argument("--num_fixed_arcs", type=int, default=5,
                   help="distinct sampled arcs timed in search and fixed mode")
    p.add_argument("--controller_runs", type=int, default=50,
                   help="controller runs timed, extrapolated to train_steps x num_aggregate")
    p.add_argument("--train_data_dir", default=None,
                   help="use this folder (valid/test: sibling folders if present, else train)")
    p.add_argument("--memory_images", type=int, default=MNIST_TRAIN,
                   help="train set of the memory run, and of the epoch whose time is printed")
    p.add_argument("--memory_steps", type=int, default=100, help="child steps of the memory run")
    p.add_argument("--skip_memory", action="store_true")
    p.add_argument("--num_threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    args.steps, args.warmup = max(args.steps, 20), max(args.warmup, 3)
    return args


def make_flags(args):
    """A namespace with every attribute graph.build / session_config read (search defaults)."""
    flags = types.SimpleNamespace(**SEARCH_DEFAULTS)
    for name in ("batch_size", "child_num_layers", "child_out_filters", "num_threads", "seed"):
        setattr(flags, name, getattr(args, name))
    return flags


# ------------------------------------------------------------------------------------ data
def write_split(split_dir, count, size, channel, rng):
    """count learnable PNGs in split_dir/<k>/: class k = bright bar at row band k, noisy background."""
    bands = max(1, size // 2)
    labels = np.arange(count) % NUM_CLASSES
    images = rng.integers(0, 60, (count, size, size, channel), dtype=np.uint8)
    for k in range(NUM_CLASSES):
        os.makedirs(os.path.join(split_dir, str(k)), exist_ok=True)
        row = 2 * (k % bands)
        images[labels == k, row:row + 2] = 220
    for i, (img, k) in enumerate(zip(images, labels)):
        if not cv2.imwrite(os.path.join(split_dir, str(k), "%d.png" % i), img):
            raise RuntimeError("cv2.imwrite failed in %s" % split_dir)
    return split_dir


def make_dataset(root, counts, size, channel, seed=0):
    """Writes root/{train,valid,test}; counts = images per split. Returns the three dirs."""
    rng = np.random.default_rng(seed)
    return tuple(write_split(os.path.join(root, s), n, size, channel, rng)
                 for s, n in zip(data_utils.SPLITS, counts))


def split_dirs(train_dir):
    """(train, valid, test) for --train_data_dir: sibling valid/test folders, else train itself."""
    parent = os.path.dirname(os.path.abspath(train_dir))
    found = [os.path.join(parent, n) for n in ("valid", "test")]
    return tuple([train_dir] + [d if os.path.isdir(d) else train_dir for d in found])


def load_data(args, tmp):
    """Reads (after generating, unless --train_data_dir) the benchmark data set."""
    if args.train_data_dir:
        dirs = split_dirs(args.train_data_dir)
    else:
        n_valid = max(args.batch_size, args.num_images // 5)
        dirs = make_dataset(os.path.join(tmp, "bench_data"), (args.num_images, n_valid, 100),
                            args.img_size, args.channel)
    return data_utils.read_data(*dirs, channel=args.channel, img_size=args.img_size, n_aug_img=1)


# ------------------------------------------------------------------------------------ timing
def timed_runs(sess, fetches, warmup, steps, feed=None):
    """Runs fetches warmup + steps times; returns ([seconds of each timed run], [their results]).
    feed: a feed_dict, or a function that makes one for each run (timed with the run, as the
    search's loop pays for it)."""
    make_feed = feed if callable(feed) else lambda: feed
    for _ in range(warmup):
        sess.run(fetches, make_feed())
    times, results = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        results.append(sess.run(fetches, make_feed()))
        times.append(time.perf_counter() - t0)
    return times, results


def train_fetches(g):
    """The fetches of loop.ChildSteps.run."""
    t = g.train
    return [t.loss, t.lr, t.grad_norm, t.train_acc, t.batch, t.train_op]


def open_session(flags, data, arc=None):
    """A fresh graph from graph.build (a search graph without arc) and its initialised session:
    (g, sess); the caller closes sess."""
    graph = tf.Graph()
    with graph.as_default():
        if flags.seed is not None:
            tf.set_random_seed(flags.seed)
        g = graph_lib.build(flags, data, arc)
    sess = tf.Session(graph=graph, config=graph_lib.session_config(flags))
    sess.run(g.init_op)
    return g, sess


def bench_child_steps(flags, data, args):
    """Search and fixed-arc train steps on the same --num_fixed_arcs controller-sampled arcs.

    Interleaved: per arc, one search step (the arc fed to the search graph), then one step of
    the arc's fixed graph, steps_per_arc times; a change of machine speed during the run thus
    hits both medians alike. The search session also times the controller phase, as in the
    real loop. Returns (median search s, median fixed s, timed steps per mode, params, controller).
    """
    with contextlib.ExitStack() as stack:
        g, sess = open_session(flags, data)
        stack.enter_context(sess)
        arcs = sample_arcs(sess, g.controller, args.num_fixed_arcs)
        search_fetches = train_fetches(g)
        timed_runs(sess, search_fetches, args.warmup, 0)  # warm-up on freshly sampled arcs
        fixed = []
        for arc in arcs:
            fixed_g, fixed_sess = open_session(flags, data, arc)
            stack.enter_context(fixed_sess)
            fixed.append((fixed_sess, train_fetches(fixed_g)))
            timed_runs(fixed_sess, fixed[-1][1], args.warmup, 0)
        search_times, fixed_times = [], []
        for (normal, reduce), (fixed_sess, fixed_fetches) in zip(arcs, fixed):
            feed = {g.controller.sample_arc[0]: normal, g.controller.sample_arc[1]: reduce}
            for _ in range(steps_per_arc(args)):
                search_times += timed_runs(sess, search_fetches, 0, 1, feed)[0]
                fixed_times += timed_runs(fixed_sess, fixed_fetches, 0, 1)[0]
        ctrl = bench_controller(sess, g, flags, args)
    return (statistics.median(search_times), statistics.median(fixed_times), len(search_times),
            g.num_params, ctrl)


def steps_per_arc(args):
    """Timed steps per arc so that all arcs together give at least --steps."""
    return -(-args.steps // args.num_fixed_arcs)


def sample_arcs(sess, controller, num):
    """`num` distinct (normal, reduce) arcs sampled by the (untrained) controller."""
    arcs = []
    while len(arcs) < num:
        normal, reduce = sess.run(controller.sample_arc)
        arc = (list(map(int, normal)), list(map(int, reduce)))
        if arc not in arcs:
            arcs.append(arc)
    return arcs


def bench_controller(sess, g, flags, args):
    """Seconds of one controller phase: --controller_runs runs of the fetches of
    controller_phase.ControllerPhase.sample, mean time x (controller_train_steps x
    controller_num_aggregate). Returns (seconds, timed, total)."""
    c = g.controller
    fetches = [c.loss, c.sample_entropy, c.lr, c.grad_norm, g.sampled_valid_acc, c.baseline, c.reward,
               c.train_op]
    total = flags.controller_train_steps * flags.controller_num_aggregate
    runs = min(max(args.controller_runs, 1), total)
    times, _ = timed_runs(sess, fetches, args.warmup, runs, lambda: reward_lib.feed(sess, g))
    return statistics.mean(times) * total, runs, total


def bench_pipeline(flags, data, args, n_aug_img=2):
    """data_utils.train_dataset alone (no model): (median s/batch, mean images/s, batches timed).

    At least 200 batches are timed so that the prefetch buffer filled during warm-up is drained."""
    with tf.Graph().as_default():
        ds = data_utils.train_dataset(dict(data, n_aug_img=n_aug_img), flags.batch_size,
                                      flags.seed, flags.child_cutout_size)
        batch = tf.data.make_one_shot_iterator(ds).get_next()
        with tf.Session(config=graph_lib.session_config(flags)) as sess:
            times, results = timed_runs(sess, batch, args.warmup, max(args.steps, 200))
    images = sum(len(labels) for _, labels in results)
    return statistics.median(times), images / sum(times), len(times)


# ------------------------------------------------------------------------------------ memory
def cli_command(args, dirs, output_dir, extra=()):
    """The real search CLI on dirs, 1 epoch, with the benchmark's model size."""
    cmd = [sys.executable, CLI, "--train_data_dir", dirs[0], "--val_data_dir", dirs[1],
           "--test_data_dir", dirs[2], "--output_dir", output_dir, "--num_epochs", "1",
           "--log_every", "50", "--img_size", str(args.img_size), "--channel", str(args.channel),
           "--batch_size", str(args.batch_size), "--child_num_layers", str(args.child_num_layers),
           "--child_out_filters", str(args.child_out_filters)]
    return cmd + list(extra)


def child_pid(pid):
    """The first child process of pid (the python under /usr/bin/time), or None."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def vm_hwm_kb(pid):
    """VmHWM (peak RSS, kB) of a live process, or 0."""
    try:
        with open("/proc/%d/status" % pid) as f:
            match = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def run_until_step(cmd, step):
    """Runs cmd until it prints `ch_step = <step>`, then SIGINTs it (the loop saves a checkpoint
    and exits). Returns (peak RSS kB by /usr/bin/time -v or else VmHWM, source, last line)."""
    use_time = os.path.exists("/usr/bin/time")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tfile:
        full = ["/usr/bin/time", "-v", "-o", tfile.name] + cmd if use_time else cmd
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # SIGINT back to its default: a benchmark started in the background (`cmd &`) ignores it,
        # and the ignore would pass to the run, which then could not be stopped at `step`.
        proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        target = re.compile(r"ch_step = %d\b" % step)
        hwm, last = 0, ""
        try:
            for line in proc.stdout:
                last = line.strip() or last
                if target.search(line):
                    py = child_pid(proc.pid) if use_time else proc.pid
                    hwm = vm_hwm_kb(py)
                    os.kill(py, signal.SIGINT)
            proc.wait()
        finally:
            if proc.poll() is None:  # the benchmark itself failed or was interrupted
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if use_time:
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tfile.read())
            if match:
                return max(int(match.group(1)), hwm), "/usr/bin/time -v", last
    return hwm, "VmHWM", last


def du_mb(path):
    """Total size of the files under path, MB."""
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return total / 2.0 ** 20


def checkpoint_mb(path):
    """Size of the largest checkpoint (model.ckpt-N.*) in path, MB."""
    sizes = {}
    for name in os.listdir(path):
        match = re.match(r"(model\.ckpt-\d+)\.", name)
        if match:
            sizes[match.group(1)] = sizes.get(match.group(1), 0) + os.path.getsize(
                os.path.join(path, name))
    return max(sizes.values(), default=0) / 2.0 ** 20


def bench_memory(args, tmp):
    """Peak RSS of the CLI on a generated --memory_images set, stopped after --memory_steps steps."""
    n = args.memory_images
    t0 = time.time()
    dirs = make_dataset(os.path.join(tmp, "mem_data"), (n, 5000, 1000), args.img_size, args.channel)
    gen_s = time.time() - t0
    out = os.path.join(tmp, "mem_out")
    steps = max(50, args.memory_steps // 50 * 50)
    kb, source, last = run_until_step(cli_command(args, dirs, out), steps)
    print("peak RSS of a search on {} {}x{}x{} images: {:.0f} MB ({}, stopped after {} child steps; "
          "{:.0f} s to write the PNGs)".format(n, args.img_size, args.img_size, args.channel,
                                               kb / 1024.0, source, steps, gen_s))
    if not kb:
        print("  (memory run failed; its last line: {})".format(last))
    print("output_dir after that run (interrupt checkpoint): {:.1f} MB, one checkpoint {:.1f} MB "
          "(max_to_keep=1)".format(du_mb(out), checkpoint_mb(out)))
    bench_complete_run(args, tmp, dirs)


def bench_complete_run(args, tmp, dirs):
    """du of output_dir after a completed tiny 1-epoch search (small train set, short controller)."""
    small = make_dataset(os.path.join(tmp, "tiny_data"), (2 * args.batch_size, args.batch_size, 100),
                         args.img_size, args.channel)
    out = os.path.join(tmp, "tiny_out")
    extra = ["--controller_train_steps", "1", "--controller_num_aggregate", "2",
             "--controller_num_final_arcs", "1"]
    proc = subprocess.run(cli_command(args, small, out, extra), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    status = "" if proc.returncode == 0 else " (exit status {}: {})".format(
        proc.returncode, proc.stdout.strip().splitlines()[-1:])
    print("output_dir after a completed 1-epoch tiny search: {:.1f} MB, one checkpoint {:.1f} MB{}"
          .format(du_mb(out), checkpoint_mb(out), status))


# ------------------------------------------------------------------------------------ main
def print_header(args, flags):
    print("cpu: {}".format(cpu_model()))
    print("tensorflow: {}".format(tf.__version__))
    print("config: {}x{}x{} images, {} train, {} layers, {} filters, batch {}, {} timed steps after "
          "{} warm-up".format(args.img_size, args.img_size, args.channel,
                              args.train_data_dir or args.num_images, flags.child_num_layers,
                              flags.child_out_filters, flags.batch_size, args.steps, args.warmup))


def main(argv=None):
    """Runs every measurement; the ratio is the last line printed."""
    start = time.time()
    tf.get_logger().setLevel("ERROR")
    tf.get_logger().setLevel("ERROR")  # no deprecation notice
    tf.disable_v2_behavior()
    tf.enable_resource_variables()
    args = parse_args(argv)
    utils.probe_devices_quietly()
    flags = make_flags(args)
    print_header(args, flags)
    with tempfile.TemporaryDirectory(prefix="enas_bench_") as tmp:
        data = load_data(args, tmp)
        if flags.batch_size > len(data["labels"]["train"]):
            sys.exit("--batch_size {} is larger than the train set".format(flags.batch_size))
        search_s, fixed_s, num_timed, num_params, (ctrl_s, ctrl_runs, ctrl_total) = \
            bench_child_steps(flags, data, args)
        b = flags.batch_size
        print("child params (search): {}".format(num_params))
        print("search child train step: {:.1f} images/s ({:.3f} s/step, median of {} over {} sampled "
              "arcs)".format(b / search_s, search_s, num_timed, args.num_fixed_arcs))
        print("fixed-arc train step: {:.1f} images/s ({:.3f} s/step, median of {} over the same "
              "arcs, interleaved with the search steps)".format(b / fixed_s, fixed_s, num_timed))
        pipe_s, pipe_mean, pipe_n = bench_pipeline(flags, data, args)
        print("input pipeline alone (n_aug_img 2): {:.0f} images/s ({:.4f} s/batch of {}, median of "
              "{}; mean {:.0f} images/s)".format(b / pipe_s, pipe_s, b, pipe_n, pipe_mean))
        steps = data_utils.num_train_batches(args.memory_images, 1, b)
        epoch_s = steps * search_s
        print("controller phase: {:.1f} s = {:.1f} % of a {}-image epoch ({} runs timed, mean x {}; "
              "epoch = {} steps x {:.3f} s = {:.0f} s)".format(
                  ctrl_s, 100.0 * ctrl_s / epoch_s, args.memory_images, ctrl_runs, ctrl_total,
                  steps, search_s, epoch_s))
        print("one search epoch of {} images: {:.1f} min (child steps {:.1f} + controller phase "
              "{:.1f}); 150 epochs: {:.1f} h".format(
                  args.memory_images, (epoch_s + ctrl_s) / 60, epoch_s / 60, ctrl_s / 60,
                  150 * (epoch_s + ctrl_s) / 3600))
        if not args.skip_memory:
            bench_memory(args, tmp)
    print("wall time: {:.0f} s".format(time.time() - start))
    print("search/fixed throughput ratio: {:.2f}".format(fixed_s / search_s))


if __name__ == "__main__":
    main()
