"""Small graph builders shared by the fixed-arc and the shared-weight child (tf.nn ops only).

Every function takes and returns a 4-D tensor in `data_format` ("NHWC" [N, H, W, C] on the CPU,
"NCHW" [N, C, H, W] for GPUs) and creates its variables with tf.get_variable in the current scope.
"""
import weakref

import tensorflow.compat.v1 as tf
from tensorflow.python.ops import tensor_array_grad

import recompute
import search_space

BN_DECAY = 0.9
BN_EPSILON = 1e-5


def channels(x, data_format):
    """Static channel count of x."""
    return x.get_shape().as_list()[3 if data_format == "NHWC" else 1]


def height(x, data_format):
    """Static spatial size of x (images are square)."""
    return x.get_shape().as_list()[1 if data_format == "NHWC" else 2]


def strides(stride, data_format):
    return [1, stride, stride, 1] if data_format == "NHWC" else [1, 1, stride, stride]


def create_weight(name, shape, initializer=None, trainable=True):
    """He-normal initialised weight, as the original (fan_in is shape[-2] for convs, shape[0] for 2-D tables)."""
    if initializer is None:
        initializer = tf.initializers.he_normal()
    return tf.get_variable(name, shape, initializer=initializer, trainable=trainable)


def truncated_normal_std(std):
    """An initializer drawing from a normal truncated at 2 std, rescaled to have std `std` (as
    he_normal draws)."""
    def init(shape, dtype=tf.float32, partition_info=None):
        return tf.random.truncated_normal(shape, dtype=dtype) * (std / TRUNCATED_NORMAL_STD)
    return init


TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of a unit normal truncated at 2 std

# What batch_norm does, its `mode`:
BN_TRAIN = "train"    # normalise with the batch's statistics and update the moving averages
BN_MOVING = "moving"  # normalise with the moving averages (a fixed arc's inference)
BN_BATCH = "batch"    # the batch's statistics, and no moving averages at all: the search child,
#                       whose shared weights have no statistics per architecture (README, "Where
#                       we differ", 4), in training and in eval alike


def shared_constant(values, dtype):
    """The graph's one Const of the flat list `values` (made at the top level on first use).

    A search graph calls its small builders hundreds of times, and a Const per call is a node in
    the Python graph, in the session's copy and in the executor; sharing them keeps the graph and
    the process smaller (ENGINEERING.md).
    """
    graph = tf.get_default_graph()
    name = "shared_constant/{}_{}".format(dtype.name, "_".join(str(v) for v in values))
    try:
        return graph.get_tensor_by_name(name + ":0")
    except KeyError:
        with graph.name_scope(None), tf.control_dependencies(None):
            return tf.constant(values, dtype, name=name)


def batch_stats_norm(x, scale, offset, data_format):
    """Fused batch norm with the batch's own statistics: x [N, H, W, C] (or NCHW) -> same shape."""
    no_statistics = shared_constant([], tf.float32)
    x, _, _ = tf.nn.fused_batch_norm(x, scale, offset, mean=no_statistics, variance=no_statistics,
                                     epsilon=BN_EPSILON, data_format=data_format, is_training=True)
    return x


def batch_norm(x, mode, data_format, name="bn"):
    """Fused batch norm (decay 0.9, epsilon 1e-5) of x -> the same shape.

    mode: BN_TRAIN (the moving averages are updated as a control dependency of the output, so
    they run whenever the output is used; not in a recomputed call's backward copy), BN_MOVING or BN_BATCH (see their definitions).
    """
    c = channels(x, data_format)
    with tf.variable_scope(name):
        offset = tf.get_variable("offset", [c], initializer=tf.zeros_initializer())
        scale = tf.get_variable("scale", [c], initializer=tf.ones_initializer())
        if mode == BN_BATCH:
            return batch_stats_norm(x, scale, offset, data_format)
        moving_mean = tf.get_variable("moving_mean", [c], trainable=False,
                                      initializer=tf.zeros_initializer())
        moving_variance = tf.get_variable("moving_variance", [c], trainable=False,
                                          initializer=tf.ones_initializer())
    if mode == BN_MOVING:
        x, _, _ = tf.nn.fused_batch_norm(x, scale, offset, mean=moving_mean, variance=moving_variance,
                                         epsilon=BN_EPSILON, data_format=data_format, is_training=False)
        return x
    x, mean, variance = tf.nn.fused_batch_norm(x, scale, offset, epsilon=BN_EPSILON,
                                               data_format=data_format, is_training=True)
    if recompute.in_backward_copy():  # the first build updates the moving averages
        return x
    update_mean = moving_mean.assign_sub((1.0 - BN_DECAY) * (moving_mean - mean))
    update_variance = moving_variance.assign_sub((1.0 - BN_DECAY) * (moving_variance - variance))
    with tf.control_dependencies([update_mean, update_variance]):
        return tf.identity(x)


def relu_conv_bn(x, out_filters, bn_mode, data_format, name, tf_kernels=False):
    """ReLU -> 1x1 conv -> BN (bn_mode, see batch_norm): brings x to out_filters channels.

    tf_kernels: see pointwise_conv.
    """
    with tf.variable_scope(name):
        w = create_weight("w", [1, 1, channels(x, data_format), out_filters])
        x = pointwise_conv(tf.nn.relu(x), w, data_format, tf_kernels)
        return batch_norm(x, bn_mode, data_format)


def pointwise_conv(x, w, data_format, tf_kernels=False):
    """1x1 stride-1 conv: x [N, H, W, C] (or NCHW), w [1, 1, C, F] -> [N, H, W, F].

    In NHWC (the CPU layout) with a static H, W and C it is one MatMul of [N*H*W, C] by [C, F]:
    the same products and sums as Conv2D, and oneDNN runs it and its gradients faster than
    Conv2D's kernels (bench/kernels.py times both). tf_kernels: always Conv2D (the search child
    keeps the kernels its speed and memory figures were measured with).
    """
    shape = x.get_shape().as_list()
    if tf_kernels or data_format != "NHWC" or None in shape[1:]:
        return tf.nn.conv2d(x, w, [1, 1, 1, 1], "VALID", data_format=data_format)
    _, h, width, c = shape
    f = w.get_shape().as_list()[3]
    y = tf.matmul(tf.reshape(x, shared_constant([-1, c], tf.int32)),
                  tf.reshape(w, shared_constant([c, f], tf.int32)))
    return tf.reshape(y, shared_constant([-1, h, width, f], tf.int32))


def separable_conv(x, w_depth, w_point, stride, data_format, tf_kernels=False):
    """Depthwise w_depth [k, k, C, 1] then pointwise w_point [1, 1, C, F]: [N, H/stride, W/stride, F].

    tf.nn.separable_conv2d's maths with the two raw ops: it adds shape and dilation constants
    to the graph at each call, and a search graph makes hundreds of calls. Unless tf_kernels
    (see pointwise_conv), a stride-1 5x5 depthwise conv in NHWC (the CPU layout) takes its
    filter gradient from depthwise_filter_grad.
    """
    own_grad = (not tf_kernels and stride == 1 and data_format == "NHWC"
                and w_depth.get_shape().as_list()[0] == 5)
    overrides = {"DepthwiseConv2dNative": "DepthwiseFilterGradAsConv"} if own_grad else {}
    with tf.get_default_graph().gradient_override_map(overrides):
        x = tf.nn.depthwise_conv2d_native(x, w_depth, strides(stride, data_format), "SAME",
                                          data_format=data_format, name="depthwise")
    return pointwise_conv(x, w_point, data_format, tf_kernels)


def depthwise_filter_grad(x, grad, kernel):
    """Filter gradient of a stride-1 SAME kernel x kernel depthwise conv (odd kernel, NHWC).

    x, grad [N, H, W, C] -> [kernel, kernel, C, 1], with
    dW[i, j, c] = sum over n, h, w of x_padded[n, h + i, w + j, c] * grad[n, h, w, c]:
    one depthwise conv of x with the batch folded into the channels ([1, H, W, N * C], padded by
    kernel // 2 inside the conv) and grad as its H x W filter, then a sum over N.
    For 5x5 filters oneDNN runs this faster than its own filter-gradient kernel, for 3x3 filters
    slower; bench/kernels.py times both.
    """
    h, w, c = x.get_shape().as_list()[1:]
    pad = kernel // 2
    with tf.control_dependencies([grad]):  # else x's copy can be made in the forward pass and kept
        x = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, -1])
    grad = tf.reshape(tf.transpose(grad, [1, 2, 0, 3]), [h, w, -1, 1])
    per_example = tf.raw_ops.DepthwiseConv2dNative(
        input=x, filter=grad, strides=[1, 1, 1, 1], padding="EXPLICIT",
        explicit_paddings=[0, 0, pad, pad, pad, pad, 0, 0])
    return tf.reduce_sum(tf.reshape(per_example, [kernel, kernel, -1, c]), 2)[..., None]


@tf.RegisterGradient("DepthwiseFilterGradAsConv")
def _depthwise_conv_grad(op, grad):
    """The input gradient of TensorFlow's kernel, the filter gradient of depthwise_filter_grad."""
    x, w_depth = op.inputs
    grad_x = tf.nn.depthwise_conv2d_native_backprop_input(tf.shape(x), w_depth, grad,
                                                          [1, 1, 1, 1], "SAME")
    return grad_x, depthwise_filter_grad(x, grad, w_depth.get_shape().as_list()[0])


def one_tap_conv(x, w, tap, data_format):
    """The 1x1 conv w [1, 1, C, F] on every other pixel: [N, ceil(H/2), ceil(W/2), F].

    tap "even": the pixels (2i, 2j); "odd": the pixels (2i + 1, 2j + 1), zero past the border.
    A 2x2 stride-2 SAME conv whose only non-zero tap is the top-left (even) or bottom-right (odd)
    one: the original's stride-2 1x1 conv (even), and its pad-by-one, drop the first row and
    column, stride-2 1x1 conv (odd), odd H or W included.

    Why not a stride-2 1x1 conv: oneDNN's 1x1 backward-weights kernel for strided convs writes
    past its scratch buffer when C is below its channel block (C < 16 with AVX-512, C < 8 with
    AVX2; oneDNN issue 6035, in TensorFlow 2.21): the search with 6 to 14 filters corrupted the
    heap and aborted. A 2x2 kernel takes another oneDNN kernel. Also, a strided slice's gradient
    was slow.
    """
    pad = [[0, 1], [0, 1]] if tap == "even" else [[1, 0], [1, 0]]
    w = tf.pad(w, pad + [[0, 0], [0, 0]])
    return tf.nn.conv2d(x, w, strides(2, data_format), "SAME", data_format=data_format)


def factorized_reduction(x, out_filters, bn_mode, data_format, name="fr"):
    """Halves H and W and maps to out_filters channels without losing the odd pixels.

    Path 1: a 1x1 conv to out_filters/2 on the even pixels; path 2: the same on the pixels shifted
    by one (the odd ones); concatenated, then BN (bn_mode, see batch_norm). No ReLU inside
    (callers put one in front).
    Each path is one stride-2 conv (one_tap_conv), the same maths as the original's 1x1 "avg
    pool" with stride 2 followed by a 1x1 conv, without materialising the subsampled tensor.
    """
    assert out_filters % 2 == 0, "out_filters must be even"
    inp_c = channels(x, data_format)
    concat_axis = 3 if data_format == "NHWC" else 1
    paths = []
    with tf.variable_scope(name):
        for scope, tap in (("path1", "even"), ("path2", "odd")):
            with tf.variable_scope(scope):
                w = create_weight("w", [1, 1, inp_c, out_filters // 2])
                paths.append(one_tap_conv(x, w, tap, data_format))
        return batch_norm(tf.concat(paths, axis=concat_axis), bn_mode, data_format)


def pool(x, op_id, stride, data_format):
    """3x3 SAME pooling: op_id search_space.AVG_POOL (padding excluded) or MAX_POOL."""
    ksize = [1, 3, 3, 1] if data_format == "NHWC" else [1, 1, 3, 3]
    fn = tf.nn.avg_pool2d if op_id == search_space.AVG_POOL else tf.nn.max_pool2d
    return fn(x, ksize, strides(stride, data_format), "SAME", data_format=data_format)


def select(index, x, branches):
    """Runs only branches[index] for an int32 scalar tensor index; returns its output tensor.

    branches: a list of (fn, weights); the chosen one returns fn(x, weights). weights is a nest
    (dict, list) of small tensors only that branch uses, or None.
    x goes down a chain of Switch ops: level k sends it to branch k if index == k, else on to
    level k + 1. Both outputs of every Switch are consumed, so x's gradient is routed back without
    the dense zero gradients tf.cond builds for every untaken branch. A branch's weights pass one
    Switch of their own (their gradient is zero when the branch is not taken). Untaken branches see
    dead tensors and do not run; one Merge forwards the taken output. The ops stay in the main
    graph, where oneDNN rewrites them all (inside tf.switch_case's functions the max-pool gradient
    falls back to a much slower kernel).
    """
    outputs = []
    preds = tf.unstack(tf.equal(tf.range(len(branches)), index))
    for k, ((fn, weights), pred) in enumerate(zip(branches, preds)):
        x_rest, x_k = tf.raw_ops.Switch(data=x, pred=pred) if k < len(branches) - 1 else (None, x)
        if weights is not None:
            weights = tf.nest.map_structure(
                lambda t: tf.raw_ops.Switch(data=t, pred=pred).output_true, weights)
        outputs.append(fn(x_k, weights))
        x = x_rest
    return tf.raw_ops.Merge(inputs=outputs).output


def ordered_read(array, index):
    """array.read(index) (a TensorArray, an int32 scalar index) whose gradient is written after
    that of the ordered_read of array built before it, in the same tf.gradients call.

    A read's gradient is a write into array's gradient accumulator, which adds the writes to
    one element in the order they run: with three or more of them (a node several slots read)
    that order, so the float sum, was up to the executor's threads, and a seeded search's
    losses changed from run to run. The chain of control dependencies fixes it; it follows the
    order the backward pass needs the writes in anyway.
    """
    with tf.get_default_graph().gradient_override_map({"TensorArrayReadV3": "OrderedRead"}):
        return array.read(index)


# graph -> {(array handle, gradient call): the name of its last ordered_read gradient's flow}
_last_read_grads = weakref.WeakKeyDictionary()


@tf.RegisterGradient("OrderedRead")
def _ordered_read_grad(op, grad):
    """TensorFlow's TensorArrayReadV3 gradient, after the previous one of ordered_read."""
    key = (op.inputs[0].name, tensor_array_grad._GetGradSource(grad))
    last = _last_read_grads.setdefault(op.graph, {})
    after = [op.graph.get_tensor_by_name(last[key])] if key in last else []
    with tf.control_dependencies(after):
        grads = tensor_array_grad._TensorArrayReadGrad(op, grad)
    last[key] = grads[2].name
    return grads


def global_avg_pool(x, data_format):
    """[N, H, W, C] (or NCHW) -> [N, C]."""
    return tf.reduce_mean(x, axis=[1, 2] if data_format == "NHWC" else [2, 3])


def drop_path(x, keep_prob, seed):
    """Drops whole examples' paths with probability 1 - keep_prob and rescales the rest by 1/keep_prob.

    The mask is per example, [N, 1, 1, 1], and so is the factor (0 or 1 / keep_prob) it becomes:
    one multiply of x, forward and backward. seed: int64 [2], the stateless draw's seed (the
    caller makes it from the run's seed, the step and the op), so a step's masks are the same
    whatever ran before it: in a resumed run, and in either data layout.
    """
    batch_size = tf.shape(x)[0]
    uniform = tf.random.stateless_uniform([batch_size, 1, 1, 1], seed, dtype=tf.float32)
    mask = tf.floor(keep_prob + uniform)
    return x * (mask / keep_prob)


def fully_connected(x, num_outputs, name="fc"):
    """[N, C] -> [N, num_outputs], no bias, as the original."""
    with tf.variable_scope(name):
        w = create_weight("w", [x.get_shape().as_list()[1], num_outputs])
        return tf.matmul(x, w)
