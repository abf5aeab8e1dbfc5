"""Small graph builders shared by the fixed-arc and the shared-weight child (tf.nn ops only).

Every function takes and returns a 4-D tensor in `data_format` ("NHWC" [N, H, W, C] on the CPU,
"NCHW" [N, C, H, W] for GPUs) and creates its variables with tf.get_variable in the current scope.
"""
import contextlib

import tensorflow.compat.v1 as tf

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
BATCH_STATS_ONLY = "batch statistics only"


def shared_constant(values, dtype):
    """The graph's one Const of the flat list `values` (made at the top level on first use).

    A search graph calls its small builders hundreds of times, and a Const per call was a node
    in the Python graph, in the session's copy and in the executor: sharing them took the search
    graph from 41,000 to 31,000 nodes and its process 60 MB lower.
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


def batch_norm(x, is_training, data_format, name="bn"):
    """Fused batch norm (decay 0.9, epsilon 1e-5).

    is_training: True: batch statistics, and the moving averages are updated as a control
    dependency of the output (so they run whenever the output is used); False: the moving
    statistics; BATCH_STATS_ONLY: batch statistics and no moving statistics at all (the search
    child: shared weights have none per architecture, README "Where we differ", 4).
    """
    c = channels(x, data_format)
    with tf.variable_scope(name):
        offset = tf.get_variable("offset", [c], initializer=tf.zeros_initializer())
        scale = tf.get_variable("scale", [c], initializer=tf.ones_initializer())
        if is_training == BATCH_STATS_ONLY:
            return batch_stats_norm(x, scale, offset, data_format)
        moving_mean = tf.get_variable("moving_mean", [c], trainable=False,
                                      initializer=tf.zeros_initializer())
        moving_variance = tf.get_variable("moving_variance", [c], trainable=False,
                                          initializer=tf.ones_initializer())
    if not is_training:
        x, _, _ = tf.nn.fused_batch_norm(x, scale, offset, mean=moving_mean, variance=moving_variance,
                                         epsilon=BN_EPSILON, data_format=data_format, is_training=False)
        return x
    x, mean, variance = tf.nn.fused_batch_norm(x, scale, offset, epsilon=BN_EPSILON,
                                               data_format=data_format, is_training=True)
    update_mean = moving_mean.assign_sub((1.0 - BN_DECAY) * (moving_mean - mean))
    update_variance = moving_variance.assign_sub((1.0 - BN_DECAY) * (moving_variance - variance))
    with tf.control_dependencies([update_mean, update_variance]):
        return tf.identity(x)


def relu_conv_bn(x, out_filters, is_training, data_format, name):
    """ReLU -> 1x1 conv -> BN: brings x to out_filters channels."""
    with tf.variable_scope(name):
        w = create_weight("w", [1, 1, channels(x, data_format), out_filters])
        x = tf.nn.relu(x)
        x = tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME", data_format=data_format)
        return batch_norm(x, is_training, data_format)


def separable_conv(x, w_depth, w_point, stride, data_format):
    """Depthwise w_depth [k, k, C, 1] then pointwise w_point [1, 1, C, F]: [N, H/stride, W/stride, F].

    tf.nn.separable_conv2d's maths with the two raw ops: it adds shape and dilation constants
    to the graph at each call, and a search graph makes hundreds of calls.
    """
    x = tf.nn.depthwise_conv2d_native(x, w_depth, strides(stride, data_format), "SAME",
                                      data_format=data_format, name="depthwise")
    return tf.nn.conv2d(x, w_point, [1, 1, 1, 1], "VALID", data_format=data_format)


def _odd_pixels_conv(x, w, data_format):
    """The 1x1 conv w [1, 1, C, F] on the odd rows and columns: [N, ceil(H/2), ceil(W/2), F].

    A 2x2 stride-2 SAME conv whose only non-zero tap is the bottom-right one: the same maths as the
    original's pad-by-one, drop the first row and column, stride-2 1x1 conv (odd H or W included),
    but its gradient is a conv gradient; the strided-slice gradient took 20 ms a call on this CPU.
    """
    w = tf.pad(w, [[1, 0], [1, 0], [0, 0], [0, 0]])
    return tf.nn.conv2d(x, w, strides(2, data_format), "SAME", data_format=data_format)


def factorized_reduction(x, out_filters, is_training, data_format, name="fr"):
    """Halves H and W and maps to out_filters channels without losing the odd pixels.

    Path 1: a 1x1 conv to out_filters/2 on the even pixels; path 2: the same on the pixels shifted
    by one (the odd ones); concatenated, then BN. No ReLU inside (callers put one in front).
    Each path is one stride-2 conv, the same maths as the original's 1x1 "avg pool" with stride 2
    followed by a 1x1 conv, without materialising the subsampled tensor (its gradient was slow).
    """
    assert out_filters % 2 == 0, "out_filters must be even"
    inp_c = channels(x, data_format)
    concat_axis = 3 if data_format == "NHWC" else 1
    with tf.variable_scope(name):
        with tf.variable_scope("path1"):
            w = create_weight("w", [1, 1, inp_c, out_filters // 2])
            even = tf.nn.conv2d(x, w, strides(2, data_format), "SAME", data_format=data_format)
        with tf.variable_scope("path2"):
            w = create_weight("w", [1, 1, inp_c, out_filters // 2])
            odd = _odd_pixels_conv(x, w, data_format)
        return batch_norm(tf.concat([even, odd], axis=concat_axis), is_training, data_format)


def pool(x, op_id, stride, data_format):
    """3x3 SAME pooling: op 2 = average (padding excluded), op 3 = max."""
    ksize = [1, 3, 3, 1] if data_format == "NHWC" else [1, 1, 3, 3]
    fn = tf.nn.avg_pool2d if op_id == 2 else tf.nn.max_pool2d
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
    falls back to a 6x slower kernel).
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


def _grad_source(tensor):
    """The name scope of the tf.gradients call that made tensor: where TensorArray gradients
    keep their accumulators (its last scope token that starts with "gradients")."""
    tokens = tensor.name.split("/")
    last = max(i for i, t in enumerate(tokens) if t.startswith("gradients"))
    return "/".join(tokens[:last + 1])


def _after_closing(tensors, arrays, after):
    """tensors, each gated on closing the TensorArrays `arrays` once the tensors `after` exist."""
    if not arrays:
        return tensors
    with tf.control_dependencies(after):
        closes = [ta.close() for ta in arrays]
    with tf.control_dependencies(closes):
        return [tf.identity(t) for t in tensors]


def _closed_after_gradients(input_grads, all_grads, arrays):
    """input_grads, gated on closing `arrays` and their gradient accumulators once all_grads
    (tensors or IndexedSlices, some None) exist."""
    live = [i for i, g in enumerate(input_grads) if g is not None]
    if not arrays or not live:
        return input_grads
    source = _grad_source(input_grads[live[0]])
    accumulators = [ta.grad(source, ta.flow) for ta in arrays]
    done = tf.nest.flatten([g for g in all_grads if g is not None], expand_composites=True)
    # the lookup of an accumulator needs its TensorArray open: it too must run before the closes
    done += [acc.handle for acc in accumulators]
    gated = dict(zip(live, _after_closing([input_grads[i] for i in live], arrays + accumulators,
                                          done)))
    return [gated.get(i) for i in range(len(input_grads))]


def _partial_gradients(y, dy, args, variables, arrays):
    """(gradients for args, for variables) of y given its gradient dy, args held constant (one
    may feed another, as a layer's two inputs); arrays are closed once they exist."""
    grads = tf.gradients(y, args + variables, grad_ys=dy, stop_gradients=args)
    return _closed_after_gradients(grads[:len(args)], grads, arrays), grads[len(args):]


# One entry per recomputed call being built with reuse_inner_outputs: in its first call a list
# the recomputed calls inside it append their outputs to; in its copy an iterator over that list.
_inner_outputs = []


@contextlib.contextmanager
def _inner_calls(outputs):
    """The recomputed calls built in this block append their outputs to `outputs` (a list) or,
    in a copy, take their outputs from it (an iterator) instead of computing them."""
    _inner_outputs.append(outputs)
    try:
        yield
    finally:
        _inner_outputs.pop()


def recomputed(fn, *inputs, keep_activations=False, reuse_inner_outputs=False):
    """fn's output, with fn's activations recomputed in the backward pass instead of kept.

    fn(*inputs) -> (y, tensor_arrays): y a tensor; tensor_arrays the TensorArrays fn made. inputs:
    nests of tensors. fn may create and read (resource) variables; the recomputation reads them
    again in fn's variable scope. The backward pass runs fn again once y's gradient exists (a
    control dependency) and differentiates that copy: memory holds one call's activations at a
    time, for about a forward pass of extra compute. fn must be deterministic and must not
    update state (no dropout, no moving averages).
    keep_activations: no recomputation; the gradients are those of the first call.
    reuse_inner_outputs: the copy does not run the recomputed calls inside fn (a cell's sep
    convs) again: it takes their first outputs, which stay in memory until then, and only their
    own gradients recompute them.
    A TensorArray holds its elements until the step ends unless closed: tensor_arrays are closed
    once y exists (the first call, when recomputed) and once the gradients do (with their
    gradient accumulators). That needs grappler off (graph.session_config): its constant folding
    and dependency optimizer moved such a close before the writes it must follow.
    """
    flat = tf.nest.flatten(inputs)
    var_scope = tf.get_variable_scope()
    # The copy is built outside the outer "gradients" name scope, so that its TensorArray
    # gradients all find one accumulator (_grad_source).
    name_scope = tf.get_default_graph().get_name_scope()
    copy_scope = (name_scope + "/" if name_scope else "") + "recomputed/"
    outer = _inner_outputs[-1] if _inner_outputs else None
    inner = []

    def call(args, inner_outputs):
        with _inner_calls(inner_outputs) if reuse_inner_outputs else contextlib.nullcontext():
            return fn(*tf.nest.pack_sequence_as(inputs, args))

    @tf.custom_gradient
    def forward(*flat_args):
        if isinstance(outer, list) or outer is None:
            y, arrays = call(list(flat_args), inner)
        else:  # in a copy: this call's first output (its own gradient recomputes it)
            assert not keep_activations, "a reused output has no activations to differentiate"
            y, arrays = tf.identity(next(outer)), []

        def grad(dy, variables=()):
            with tf.name_scope(copy_scope), tf.variable_scope(var_scope, reuse=True,
                                                                  auxiliary_name_scope=False):
                if keep_activations:
                    args, y_again, arrays_again = list(flat_args), y, arrays
                else:
                    with tf.control_dependencies([dy]):
                        args = [tf.identity(t) for t in flat_args]
                    y_again, arrays_again = call(args, iter(inner))
                return _partial_gradients(y_again, dy, args, list(variables), arrays_again)
        return (y if keep_activations else released(y, arrays)), grad
    y = forward(*flat)
    if isinstance(outer, list):
        outer.append(y)
    return y


def released(y, arrays):
    """y, once the TensorArrays that computed it are closed (where no gradient passes)."""
    return _after_closing([y], arrays, [y])[0]


def global_avg_pool(x, data_format):
    """[N, H, W, C] (or NCHW) -> [N, C]."""
    return tf.reduce_mean(x, axis=[1, 2] if data_format == "NHWC" else [2, 3])


def drop_path(x, keep_prob):
    """Drops whole examples' paths with probability 1 - keep_prob and rescales the rest by 1/keep_prob.

    The mask is per example, [N, 1, 1, 1].
    """
    batch_size = tf.shape(x)[0]
    mask = tf.floor(keep_prob + tf.random.uniform([batch_size, 1, 1, 1], dtype=tf.float32))
    return x / keep_prob * mask


def fully_connected(x, num_outputs, name="fc"):
    """[N, C] -> [N, num_outputs], no bias, as the original."""
    with tf.variable_scope(name):
        w = create_weight("w", [x.get_shape().as_list()[1], num_outputs])
        return tf.matmul(x, w)
