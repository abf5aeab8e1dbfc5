"""Times TensorFlow's conv kernels against the formulations ops.py uses instead, on this machine.

    python bench/kernels.py [--runs 15]

For the shapes of the retraining presets (bench/retrain.py: batch 128 at 32/16/8 pixels with
20/40/80 channels, batch 144 with 36/72/144 channels), interleaved in one process, prints the
median milliseconds and the largest relative difference of the results:
  depthwise filter gradient (3x3 and 5x5): TensorFlow's DepthwiseConv2dNativeBackpropFilter
    against ops.depthwise_filter_grad (one forward depthwise conv); ops.separable_conv uses the
    second one for stride-1 5x5 filters;
  1x1 conv (C -> C channels) and its two gradients: Conv2D and its backprop kernels against
    ops.pointwise_conv's MatMul and the MatMuls of its gradient.
If a replacement is not faster on your machine, these are the figures to look at.
"""
import argparse
import os
import statistics
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import utils  # noqa: E402,F401  (first: imports TensorFlow quietly)
from machine import cpu_model  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

import graph as graph_lib  # noqa: E402
import ops  # noqa: E402

SHAPES = [(128, 32, 20), (128, 16, 40), (128, 8, 80), (144, 32, 36), (144, 16, 72), (144, 8, 144)]


def depthwise_grad_pair(x, grad, kernel):
    """([TensorFlow's filter gradient], [ops.depthwise_filter_grad]) of x, grad [N, H, W, C]."""
    channels = x.get_shape().as_list()[3]
    builtin = tf.nn.depthwise_conv2d_native_backprop_filter(
        x, [kernel, kernel, channels, 1], grad, [1, 1, 1, 1], "SAME")
    return [builtin], [ops.depthwise_filter_grad(x, grad, kernel)]


def pointwise_pair(x, grad):
    """([Conv2D's output, its gradients], [ops.pointwise_conv's]) for a C -> C 1x1 conv of x."""
    channels = x.get_shape().as_list()[3]
    w = tf.Variable(tf.random.normal([1, 1, channels, channels]))
    return [[y] + tf.gradients(y, [x, w], grad)
            for y in (tf.nn.conv2d(x, w, [1, 1, 1, 1], "VALID"), ops.pointwise_conv(x, w, "NHWC"))]


def time_pair(shape, build, runs):
    """-> (first ms, second ms, max relative difference) of build(x, grad) for x, grad of shape."""
    with tf.Graph().as_default():
        x = tf.Variable(tf.random.normal(shape))
        grad = tf.Variable(tf.random.normal(shape))
        pair = build(x, grad)
        config = graph_lib.session_config(types.SimpleNamespace(num_threads=0))
        with tf.Session(config=config) as sess:
            sess.run(tf.global_variables_initializer())
            want, got = sess.run(pair)
            runs_of = [[t.op for t in tensors] for tensors in pair]
            times = [[], []]
            for ops_run in runs_of:
                sess.run(ops_run)
            for _ in range(runs):
                for k, ops_run in enumerate(runs_of):
                    start = time.perf_counter()
                    sess.run(ops_run)
                    times[k].append(time.perf_counter() - start)
    diff = max(float(abs(a - b).max() / abs(a).max()) for a, b in zip(want, got))
    return 1e3 * statistics.median(times[0]), 1e3 * statistics.median(times[1]), diff


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    tf.get_logger().setLevel("ERROR")
    tf.disable_v2_behavior()
    print("CPU: " + cpu_model())
    print("| op | x [N, H, W, C] | TensorFlow's kernel | ops.py's | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|")
    cases = [("{0}x{0} depthwise filter gradient".format(k),
              lambda x, g, k=k: depthwise_grad_pair(x, g, k)) for k in (5, 3)]
    cases.append(("1x1 conv, forward + both gradients", pointwise_pair))
    for name, build in cases:
        for shape in SHAPES:
            builtin, ours, diff = time_pair([shape[0], shape[1], shape[1], shape[2]], build, args.runs)
            print("| {} | {}x{}x{}x{} | {:.2f} ms | {:.2f} ms | {:.2f}x | {:.1e} |".format(
                name, shape[0], shape[1], shape[1], shape[2], builtin, ours, builtin / ours, diff),
                flush=True)


if __name__ == "__main__":
    main()
