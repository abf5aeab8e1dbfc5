"""GPU check: run this first on a machine with a GPU.

    python bench/gpu_check.py [--img_size 32 --batch_size 128 --child_num_layers 6 --steps 20]

With a GPU it
  1. trains the search child one step in the GPU layout (--data_format NCHW) and checks that its
     convolutions (forward and gradients) ran on the GPU;
  2. checks on the GPU that the child computes the same logits, loss and gradients in NCHW as
     in NHWC with the same weights, batch and arcs (a fixed arc and a sampled search arc);
  3. prints images/s of a search step and a fixed-arc step (the MNIST cell), with the GPU's name.
Without a GPU it says so in one line and exits 0. Exit 1 when a check fails.
The layout comparison (compare_layouts) is also what tests/test_layouts.py runs on the CPU.
"""
import argparse
import os
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import utils  # noqa: E402  (first: imports TensorFlow quietly)
import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

import graph as graph_lib  # noqa: E402
from micro_child import MicroChild  # noqa: E402
import search_space  # noqa: E402

CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")  # and their Backprop* gradients
NUM_CLASSES, BATCH = 3, 4


def gpu_names():
    """Names of the GPUs TensorFlow sees (device_lib, as utils.probe_devices_quietly)."""
    utils.probe_devices_quietly()
    from tensorflow.python.client import device_lib
    return [d.physical_device_desc for d in device_lib.list_local_devices() if d.device_type == "GPU"]


# ----------------------------------------------------------------------- layout equivalence
def layout_outputs(data_format, size, fixed_arc=None, sampled_arc=None, weights=None, device=None):
    """Builds a small child (1 layer, B = 5, 4 filters, drop path and the aux head for a fixed
    arc) in data_format on device, sets `weights` ({name: value}; None keeps its own start) and
    runs one training-mode forward and backward pass on a fixed batch [4, size, size, 1].
    Returns ({name: weight}, {"logits", "aux_logits", "loss": value}, {name: dense gradient})."""
    rng = np.random.RandomState(size)
    images = rng.randn(BATCH, size, size, 1).astype(np.float32)
    labels = rng.randint(0, NUM_CLASSES, BATCH).astype(np.int32)
    with tf.Graph().as_default(), tf.device(device):
        tf.enable_resource_variables()
        tf.set_random_seed(size)  # the same start every run: see compare_layouts
        child = MicroChild(num_classes=NUM_CLASSES, num_layers=1, num_cells=5, out_filters=4,
                           drop_path_keep_prob=0.6 if fixed_arc else None, data_format=data_format,
                           fixed_arc=fixed_arc, num_train_batches=1, seed=5)
        arcs = [tf.constant(a, tf.int32) for a in sampled_arc] if sampled_arc else [None, None]
        logits, aux_logits = child.model(tf.constant(images), True, *arcs)
        cross_entropy = [tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            logits=out, labels=tf.constant(labels))) for out in (logits, aux_logits)]
        loss = cross_entropy[0] + 0.4 * cross_entropy[1]
        variables = tf.trainable_variables()
        grads = [tf.convert_to_tensor(g) for g in tf.gradients(loss, variables)]  # rows: dense
        assigns = [v.assign(weights[v.op.name]) for v in variables] if weights else []
        config = graph_lib.session_config(types.SimpleNamespace(num_threads=0))
        with tf.Session(config=config) as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(assigns)
            values = sess.run({v.op.name: v for v in variables})
            outputs = sess.run(dict(logits=logits, aux_logits=aux_logits, loss=loss))
            grad_values = sess.run(grads)
    return values, outputs, {v.op.name: g for v, g in zip(variables, grad_values)}


def compare_layouts(size, fixed_arc=None, sampled_arc=None, device=None, tolerance=2e-4):
    """NHWC against NCHW with the NHWC child's weights: the list of (name, max |difference|)
    of the outputs and gradients that differ by more than tolerance * max(1, max |NHWC value|).

    The weights start from a fixed seed. With a new draw each run, about 1 run in 80 failed
    without any fault: in this tiny child an input of a ReLU can be 0 up to rounding (one
    captured case: 6.8e-7 in NHWC, -7.6e-8 in NCHW, from the same weights every time), and
    the ReLU then passes that element's gradient in one layout only."""
    weights, want, want_grads = layout_outputs("NHWC", size, fixed_arc, sampled_arc, None, device)
    _, got, got_grads = layout_outputs("NCHW", size, fixed_arc, sampled_arc, weights, device)
    assert sorted(got_grads) == sorted(want_grads)
    pairs = [(name, got[name], want[name]) for name in want]
    pairs += [(name, got_grads[name], want_grads[name]) for name in want_grads]
    differ = []
    for name, g, w in pairs:
        diff = float(np.abs(np.asarray(g) - np.asarray(w)).max())
        if diff > tolerance * max(1.0, float(np.abs(w).max())):
            differ.append((name, diff))
    return differ


def layout_cases():
    """(what, kwargs of compare_layouts): both example cells (10x10 images: the second reduction
    reduces a 5x5 map) and a search arc drawn uniformly."""
    sampled = search_space.parse_arc(search_space.random_arc_string(5, np.random.default_rng(0)), 5)
    return [("fixed MNIST cell", dict(size=10, fixed_arc=search_space.parse_arc(search_space.MNIST_ARC, 5))),
            ("fixed CIFAR-10 cell", dict(size=10, fixed_arc=search_space.parse_arc(search_space.CIFAR10_ARC, 5))),
            ("search, sampled arc", dict(size=12, sampled_arc=sampled))]


# ----------------------------------------------------------------------- placement and speed
def conv_devices(sess, g):
    """{device: number of convolution kernels} that ran in one traced training step."""
    options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
    metadata = tf.RunMetadata()
    sess.run(g.train.train_op, options=options, run_metadata=metadata)
    counts = {}
    for dev in metadata.step_stats.dev_stats:
        for node in dev.node_stats:
            if node.timeline_label.split("(")[0].split(" = ")[-1].startswith(CONV_OPS):
                counts[dev.device] = counts.get(dev.device, 0) + 1
    return counts


def main(argv=None):
    import throughput
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in (("img_size", 32), ("batch_size", 128), ("child_num_layers", 6),
                          ("child_out_filters", 20), ("steps", 20), ("num_images", 1000)):
        p.add_argument("--" + name, type=int, default=default)
    args = p.parse_args(argv)
    names = gpu_names()
    if not names:
        print("No GPU visible to TensorFlow: nothing to check here (run this on the GPU machine).")
        return 0
    print("GPU: " + "; ".join(names))
    ok = True
    for what, kwargs in layout_cases():
        differ = compare_layouts(device="/GPU:0", tolerance=1e-3, **kwargs)
        ok &= not differ
        print("NCHW = NHWC on the GPU, {}: {}".format(what, "yes" if not differ else "NO, " + str(differ[:5])))
    flags = throughput.make_flags(types.SimpleNamespace(
        batch_size=args.batch_size, child_num_layers=args.child_num_layers,
        child_out_filters=args.child_out_filters, num_threads=0, seed=0))
    flags.data_format = "NCHW"
    with tempfile.TemporaryDirectory() as tmp:
        data = throughput.load_data(types.SimpleNamespace(
            train_data_dir=None, num_images=args.num_images, batch_size=args.batch_size,
            img_size=args.img_size, channel=1), tmp)
        for label, arc in (("search", None), ("fixed MNIST cell", search_space.parse_arc(search_space.MNIST_ARC, 5))):
            g, sess = throughput.open_session(flags, data, arc)
            with sess:
                devices = conv_devices(sess, g)
                on_cpu = sum(n for d, n in devices.items() if "GPU" not in d.upper())
                ok &= on_cpu == 0
                times, _ = throughput.timed_runs(sess, throughput.train_fetches(g), 3, args.steps)
            print("{} step: {:.1f} images/s (median of {}); convolution kernels by device: {}{}".format(
                label, args.batch_size / float(np.median(times)), args.steps, devices,
                "" if on_cpu == 0 else "  <- NOT all on the GPU"))
    print("GPU check: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
