"""Retraining benchmark: speed, memory and where the time goes in a fixed-arc training step.

    python bench/retrain.py [--preset mnist|paper] [--variants none,none/sep_convs,...]
                            [--profile] [--skip_memory] [--steps 10]

Presets (any of their values can be overridden by the flag of the same name):
  mnist  32x32x1, the MNIST cell, 6 layers, 20 filters, batch 128, no cutout
  paper  32x32x3, the CIFAR-10 cell, 15 layers, 36 filters, batch 144, cutout 16 (the paper's final)
Prints, for every --variants value PRECISION[/RECOMPUTE] (main_child_trainer.py's
--mixed_precision and --child_recompute; RECOMPUTE defaults to none):
  images/s of a training step (median of --steps after --warmup; the variants' steps interleaved
  in one process, so a change of machine speed hits them alike);
  peak RSS of the real CLI (a 1-epoch retraining of --memory_steps steps, in its own process,
  run first);
  with --memory_profile, the tensors alive at one traced step's peak, by the op group making them;
  with --profile, one traced step per variant by op type (share of the op time, summed over threads), and the
  step's GFLOP/s against this machine's measured float32 matmul peak.
The data is generated (bench/throughput.py's learnable bars), train set --num_images images.
"""
import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import utils  # noqa: E402  (first: imports TensorFlow quietly)
import throughput as tp  # noqa: E402  (generated data, timing helpers)
from machine import cpu_model  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

import data_utils  # noqa: E402
import graph as graph_lib  # noqa: E402
import search_space  # noqa: E402

PRESETS = {
    "mnist": dict(img_size=32, channel=1, arc=search_space.MNIST_ARC, child_num_layers=6, child_out_filters=20,
                  batch_size=128, child_cutout_size=None, child_random_crop_pad=0, child_random_flip=False),
    "paper": dict(img_size=32, channel=3, arc=search_space.CIFAR10_ARC, child_num_layers=15, child_out_filters=36,
                  batch_size=144, child_cutout_size=16, child_random_crop_pad=4, child_random_flip=True),
}
# main_child_trainer.py's defaults that graph.build reads, beside the preset's
FINAL_DEFAULTS = dict(
    data_format="NHWC", num_epochs=630, seed=0, num_threads=0, child_num_cells=5, child_lr_max=0.05,
    child_lr_min=0.00001, child_lr_T_0=10, child_lr_T_mul=2, child_grad_bound=5.0,
    child_clip_mode="global", child_keep_prob=0.8, child_drop_path_keep_prob=0.6, child_l2_reg=2e-4,
    child_use_aux_heads=True, mixed_precision="none")
# op types by what they do, for the profile table (first match wins; the rest is "other")
OP_GROUPS = [
    ("depthwise conv, gradients", ("DepthwiseConv2dNativeBackprop",)),
    ("depthwise conv", ("DepthwiseConv2dNative",)),
    ("1x1 / full conv, gradients", ("Conv2DBackprop",)),
    ("1x1 / full conv", ("Conv2D",)),
    ("batch norm, gradients", ("FusedBatchNormGrad",)),
    ("batch norm", ("FusedBatchNorm",)),
    ("pooling (and gradients)", ("Pool",)),
    ("relu (and gradients)", ("Relu",)),
    ("concat / slice / pad", ("Concat", "Slice", "Pad")),
    ("drop path, dropout (mask, scale)", ("Floor", "RandomUniform", "RealDiv", "Mul")),
    ("add / add_n", ("AddN", "AddV2", "Add")),
    ("optimizer, clipping, L2", ("ApplyMomentum", "Sqrt", "Square", "Sum", "L2Loss", "Maximum")),
    ("casts (mixed precision)", ("Cast",)),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="mnist")
    for name in ("img_size", "channel", "child_num_layers", "child_out_filters", "batch_size",
                 "child_cutout_size"):
        p.add_argument("--" + name, type=int, default=None, help="overrides the preset")
    p.add_argument("--arc", default=None, help="the fixed arc (overrides the preset's)")
    p.add_argument("--variants", default="none,none/sep_convs,none/all,mixed_bfloat16",
                   help="comma-separated PRECISION[/RECOMPUTE] to compare: --mixed_precision and "
                        "--child_recompute values")
    p.add_argument("--num_images", type=int, default=2000, help="generated train set size")
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="trace one step per variant by op type")
    p.add_argument("--memory_profile", action="store_true",
                   help="trace one step per variant: the tensors alive at its peak, by producing op")
    p.add_argument("--skip_memory", action="store_true")
    p.add_argument("--skip_speed", action="store_true", help="only the memory runs")
    p.add_argument("--memory_steps", type=int, default=20, help="steps of the memory run's epoch")
    args = p.parse_args(argv)
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name, None) is None:  # not a flag, or not given
            setattr(args, name, value)
    args.variants = args.variants.split(",")
    return args


def variant_flags(variant):
    """{"mixed_precision": ..., "child_recompute": ...} of a --variants value."""
    precision, _, recompute_mode = variant.partition("/")
    return dict(mixed_precision=precision, child_recompute=recompute_mode or "none")


def make_flags(args, variant):
    flags = dict(FINAL_DEFAULTS, **variant_flags(variant))
    for name in ("child_num_layers", "child_out_filters", "batch_size", "child_cutout_size",
                 "child_random_crop_pad", "child_random_flip"):
        flags[name] = getattr(args, name)
    return types.SimpleNamespace(**flags)


def open_session(args, data, variant):
    """The fixed-arc training graph of graph.build and its session as the CLI configures it."""
    flags = make_flags(args, variant)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        g = graph_lib.build(flags, data, search_space.parse_arc(args.arc, 5))
    sess = tf.Session(graph=graph, config=graph_lib.session_config(flags, search=False))
    sess.run(g.init_op)
    return g, sess


def time_steps(sessions, args):
    """{variant: median seconds of a training step}, the variants' steps interleaved."""
    fetches = {p: tp.train_fetches(g) for p, (g, _) in sessions.items()}
    for p, (_, sess) in sessions.items():
        tp.timed_runs(sess, fetches[p], args.warmup, 0)
    times = collections.defaultdict(list)
    for _ in range(args.steps):
        for p, (_, sess) in sessions.items():
            times[p] += tp.timed_runs(sess, fetches[p], 0, 1)[0]
    return {p: statistics.median(t) for p, t in times.items()}


def _group(op_type):
    for name, keys in OP_GROUPS:
        if any(k in op_type for k in keys):
            return name
    return "other"


def profile_step(g, sess):
    """One FULL_TRACE training step -> ({group: op seconds}, {op type: op seconds})."""
    meta = tf.RunMetadata()
    sess.run(tp.train_fetches(g), options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
             run_metadata=meta)
    by_type = collections.Counter()
    for dev in meta.step_stats.dev_stats:
        for node in dev.node_stats:
            label = node.timeline_label
            op_type = label.split("=", 1)[1].split("(")[0].strip() if "=" in label else node.node_name
            by_type[op_type.replace("_MklNative", "").replace("_Mkl", "")] += node.all_end_rel_micros / 1e6
    by_group = collections.Counter()
    for op_type, secs in by_type.items():
        by_group[_group(op_type)] += secs
    return by_group, by_type


def _buffers(meta, graph):
    """{buffer id: (first op's start, last reader's end, bytes, producing op type, op name)} of
    one traced step (meta: its RunMetadata), in microseconds. A buffer lives from its producer's
    start to the end of the last traced op that reads its tensor (graph: the step's tf.Graph);
    tensors that forward a buffer (Identity) share its allocation id."""
    ends, outputs = {}, []
    for dev in meta.step_stats.dev_stats:
        for node in dev.node_stats:
            start, end = node.all_start_micros, node.all_start_micros + node.all_end_rel_micros
            ends[node.node_name] = max(end, ends.get(node.node_name, 0))
            label = node.timeline_label
            op_type = label.split("=", 1)[1].split("(")[0].strip() if "=" in label else node.node_name
            for slot, out in enumerate(node.output):
                alloc = out.tensor_description.allocation_description
                if alloc.allocated_bytes > 0:
                    outputs.append((alloc.allocation_id or id(out), node.node_name, slot, start,
                                    alloc.allocated_bytes, op_type.replace("_MklNative", "").replace("_Mkl", "")))
    buffers = {}
    for key, name, slot, start, size, op_type in outputs:
        try:
            readers = [c.name for c in graph.get_operation_by_name(name).outputs[slot].consumers()]
        except (KeyError, ValueError, IndexError):
            readers = []
        end = max([ends[r] for r in readers if r in ends] + [ends[name]])
        first = buffers.get(key, (start, end, size, op_type, name))
        buffers[key] = (min(first[0], start), max(first[1], end), max(first[2], size), first[3], first[4])
    return buffers


def live_at_peak(g, sess):
    """One traced training step: (peak MB of the buffers alive at once, {what: MB alive at that
    moment}), what = the producing op group (OP_GROUPS), "backward" for ops under gradients/."""
    meta = tf.RunMetadata()
    sess.run(tp.train_fetches(g), options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
             run_metadata=meta)
    buffers = _buffers(meta, sess.graph)
    events = sorted([(start, size) for start, _, size, _, _ in buffers.values()] +
                    [(end, -size) for _, end, size, _, _ in buffers.values()], key=lambda e: (e[0], e[1]))
    alive, peak, peak_time = 0, 0, 0
    for time, change in events:
        alive += change
        if alive > peak:
            peak, peak_time = alive, time
    by_group = collections.Counter()
    for start, end, size, op_type, name in buffers.values():
        if start <= peak_time < end:
            where = "backward: " if "gradients" in name else "forward: "
            by_group[where + _group(op_type)] += size / 2 ** 20
    return peak / 2 ** 20, by_group


def forward_flops(g, batch_size):
    """Multiply-adds x 2 of the convolutions and matmuls the training loss depends on, per step."""
    seen, todo, flops = set(), [g.train.loss.op], 0
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        todo += [t.op for t in op.inputs]
        if op.type in ("Conv2D", "DepthwiseConv2dNative", "MatMul"):
            out = op.outputs[0].get_shape().as_list()
            w = op.inputs[1].get_shape().as_list()
            per_output = w[0] if op.type == "MatMul" else (
                w[0] * w[1] * (w[2] if op.type == "Conv2D" else 1))
            count = batch_size
            for d in out[1:]:
                count *= d
            flops += 2 * per_output * count
    return flops


def matmul_peak_gflops(size=2048, runs=10):
    """Measured float32 GFLOP/s of a size x size matmul on this machine (median of runs)."""
    with tf.Graph().as_default():
        a = tf.random.normal([size, size])
        product = tf.reduce_sum(tf.matmul(a, a))
        with tf.Session(config=graph_lib.session_config(types.SimpleNamespace(num_threads=0))) as sess:
            times = tp.timed_runs(sess, product, 2, runs)[0]
    return 2.0 * size ** 3 / statistics.median(times) / 1e9


def peak_rss_mb(args, dirs, variant, tmp):
    """Peak RSS of `main_child_trainer.py` retraining 1 epoch of --memory_steps steps."""
    out = tempfile.mkdtemp(dir=tmp)
    cmd = [sys.executable, os.path.join(ROOT, "main_child_trainer.py"), "--child_fixed_arc", args.arc,
           "--train_data_dir", dirs[0], "--val_data_dir", dirs[1], "--test_data_dir", dirs[2],
           "--img_size", str(args.img_size), "--channel", str(args.channel), "--n_aug_img", "1",
           "--num_epochs", "1", "--child_num_layers", str(args.child_num_layers),
           "--child_out_filters", str(args.child_out_filters), "--batch_size", str(args.batch_size),
           "--output_dir", out, "--log_every", "1000"]
    cmd += ["--{}={}".format(name, value) for name, value in variant_flags(variant).items()]
    if args.child_cutout_size:
        cmd += ["--child_cutout_size", str(args.child_cutout_size)]
    with open(os.path.join(out, "bench.err"), "w+") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            err.seek(0)
            raise RuntimeError("memory run failed: " + err.read()[-2000:])
    return usage.ru_maxrss / 1024.0


def print_memory_profile(name, peak_mb, by_group):
    print("\nmemory profile, {}: {:.0f} MB of tensors alive at the step's peak (approximate: a "
          "buffer lives from its op's start to its last reader's end)".format(name, peak_mb))
    print("| produced by | MB | share |\n|---|---|---|")
    for group, mb in by_group.most_common(8):
        print("| {} | {:.0f} | {:.1f} % |".format(group, mb, 100.0 * mb / peak_mb))


def print_profile(name, by_group, by_type, flops, step_s, peak):
    total = sum(by_group.values())
    print("\nprofile, {}: {:.2f} s of op time in one step (summed over threads)".format(name, total))
    print("| ops | s | share |\n|---|---|---|")
    for group, secs in by_group.most_common():
        print("| {} | {:.3f} | {:.1f} % |".format(group, secs, 100.0 * secs / total))
    print("top op types: " + ", ".join("{} {:.1f} %".format(t, 100.0 * s / total)
                                        for t, s in by_type.most_common(6)))
    print("step: {:.1f} GFLOP (3 x forward conv/matmul), {:.1f} GFLOP/s = {:.1f} % of the "
          "{:.0f} GFLOP/s matmul peak".format(3 * flops / 1e9, 3 * flops / 1e9 / step_s,
                                               100.0 * 3 * flops / 1e9 / step_s / peak, peak))


def main(argv=None):
    tf.get_logger().setLevel("ERROR")
    tf.get_logger().setLevel("ERROR")  # no deprecation notice
    tf.disable_v2_behavior()  # as trainer.main does
    tf.enable_resource_variables()
    args = parse_args(argv)
    utils.probe_devices_quietly()
    print("CPU: {}; preset {}: {}x{}x{}, {} layers, {} filters, batch {}, cutout {}".format(
        cpu_model(), args.preset, args.img_size, args.img_size, args.channel,
        args.child_num_layers, args.child_out_filters, args.batch_size, args.child_cutout_size))
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_memory:  # first, while this process is still small (the paper preset's
            # step needs about 8 GB: a CLI run beside this process's two sessions ran out of memory)
            mem_dirs = tp.make_dataset(os.path.join(tmp, "mem"), (args.memory_steps * args.batch_size,
                                                                  200, 100), args.img_size, args.channel)
            for v in args.variants:
                print("{}: peak RSS of a {}-step retraining (CLI): {:.0f} MB".format(
                    v, args.memory_steps, peak_rss_mb(args, mem_dirs, v, tmp)), flush=True)
        if args.skip_speed:
            return
        n = max(args.num_images, args.batch_size * 2)
        dirs = tp.make_dataset(os.path.join(tmp, "data"), (n, 200, 100), args.img_size, args.channel)
        data = data_utils.read_data(*dirs, channel=args.channel, img_size=args.img_size, n_aug_img=1)
        sessions = {v: open_session(args, data, v) for v in args.variants}
        medians = time_steps(sessions, args)
        for v in args.variants:
            print("{}: {:.3f} s per step, {:.1f} images/s, {:.2f}x the first variant's time".format(
                v, medians[v], args.batch_size / medians[v], medians[v] / medians[args.variants[0]]))
        if args.memory_profile:
            for v, (g, sess) in sessions.items():
                print_memory_profile(v, *live_at_peak(g, sess))
        if args.profile:
            peak = matmul_peak_gflops()
            for p, (g, sess) in sessions.items():
                print_profile(p, *profile_step(g, sess), forward_flops(g, args.batch_size),
                              medians[p], peak)

if __name__ == "__main__":
    main()
