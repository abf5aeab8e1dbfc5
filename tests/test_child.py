"""Tests of micro_child.MicroChild: fixed-arc shapes, learning, search-mode branch execution,
arc feeding, and checkpoint / resume."""
import os
import re
import sys
import types

import numpy as np
import pytest

import tensorflow.compat.v1 as tf

import checkpoints
import data_utils
import graph as graph_lib
import ops
import recompute
from micro_child import MicroChild
from micro_controller import MicroController
import search_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# num_cells = 2 arcs; with child_num_layers 0 both cells are reduction cells, so the reduce half matters.
POOL_ARC = [1, 3, 0, 2, 2, 4, 0, 3]   # no separable conv anywhere
CONV_ARC = [1, 0, 0, 3, 2, 4, 0, 2]   # node 2, slot x: sep 3x3 on input 1
SMALL_FIXED = "0 0 1 2 1 4 2 3 1 0 0 3 2 4 1 2"


def _session():
    """A session configured as the scripts' (grappler off, which recompute.py relies on)."""
    return tf.Session(config=graph_lib.session_config(types.SimpleNamespace(num_threads=0)))


def _graph():
    tf.enable_resource_variables()
    return tf.Graph()


def _unused_count(arc, num_cells):
    used = set(arc[0::4]) | set(arc[2::4])
    return sum(1 for i in range(num_cells + 2) if i not in used)


class _RecordingChild(MicroChild):
    """Records the output tensor of every cell."""

    def _layer(self, layer_id, layers, arc, out_filters, reduction, is_training):
        out = super()._layer(layer_id, layers, arc, out_filters, reduction, is_training)
        self.recorded.append((layer_id, reduction, out))
        return out


# ---------------------------------------------------------------------------- fixed arc shapes
@pytest.mark.parametrize("num_layers", [2, 3])
def test_fixed_mnist_arc_shapes(num_layers):
    normal, reduce = search_space.parse_arc(search_space.MNIST_ARC, 5)
    assert _unused_count(normal, 5) == 5 and _unused_count(reduce, 5) == 3
    with _graph().as_default():
        child = _RecordingChild(num_classes=10, num_layers=num_layers, num_cells=5, out_filters=8,
                                fixed_arc=(normal, reduce), drop_path_keep_prob=0.6)
        child.recorded = []
        images = tf.zeros([2, 12, 12, 1])
        logits, aux = child.model(images, True)
        assert logits.get_shape().as_list() == [2, 10]
        assert aux is not None and aux.get_shape().as_list() == [2, 10]
        recorded = child.recorded
        assert [r[0] for r in recorded] == list(range(num_layers + 2))
        reductions = [layer_id for layer_id, red, _ in recorded if red]
        assert reductions == [num_layers // 3, 2 * (num_layers // 3) + 1]
        size, filters = 12, 8
        for layer_id, reduction, out in recorded:
            if reduction:
                size, filters = size // 2, filters * 2
            n_unused = 3 if reduction else 5
            assert out.get_shape().as_list() == [2, size, size, n_unused * filters], layer_id
        assert size == 3
        # the recorded shapes are the real run-time shapes too
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            outs = sess.run([r[2] for r in recorded] + [logits])
        for (_, _, t), v in zip(recorded, outs):
            assert list(v.shape) == t.get_shape().as_list()
        assert np.all(np.isfinite(outs[-1]))


def test_fixed_eval_graph_has_no_aux_head_and_same_shapes():
    normal, reduce = search_space.parse_arc(search_space.MNIST_ARC, 5)
    with _graph().as_default():
        child = _RecordingChild(num_classes=4, num_layers=2, num_cells=5, out_filters=8,
                                fixed_arc=(normal, reduce))
        child.recorded = []
        logits, aux = child.model(tf.zeros([3, 12, 12, 1]), False)
        assert aux is None
        assert logits.get_shape().as_list() == [3, 4]
        # reduction cells at layer 0 and 1: 12 -> 6 -> 3, then one normal cell
        assert [r[2].get_shape().as_list() for r in child.recorded] == [
            [3, 6, 6, 3 * 16], [3, 3, 3, 3 * 32], [3, 3, 3, 5 * 32], [3, 3, 3, 5 * 32]]


@pytest.mark.parametrize("size", [8, 7])
def test_factorized_reduction_paths_are_the_originals_strided_1x1_convs(size):
    """Path 1 equals the original's stride-2 1x1 conv; path 2 its pad by one, drop the first
    row and column, stride-2 1x1 conv (odd sizes included)."""
    rng = np.random.RandomState(size)
    x_np = rng.randn(2, size, size, 3).astype(np.float32)
    w_np = rng.randn(1, 1, 3, 4).astype(np.float32)
    with _graph().as_default():
        x, w = tf.constant(x_np), tf.constant(w_np)
        shifted = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])[:, 1:, 1:, :]
        expected = [tf.nn.conv2d(x, w, [1, 2, 2, 1], "VALID"),
                    tf.nn.conv2d(shifted, w, [1, 2, 2, 1], "VALID")]
        with _session() as sess:
            got, want = sess.run([[ops.one_tap_conv(x, w, tap, "NHWC") for tap in ("even", "odd")],
                                  expected])
    for g, e in zip(got, want):
        assert g.shape == (2, (size + 1) // 2, (size + 1) // 2, 4)
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fixed", [True, False])
def test_odd_feature_map_sizes_train(fixed):
    """10x10 images reach the second reduction at 5x5 (odd): shapes agree and the loss falls."""
    normal, reduce = search_space.parse_arc(SMALL_FIXED, 2)
    rng = np.random.RandomState(0)
    labels = np.arange(12) % 3
    images = (rng.randn(12, 10, 10, 1) * 0.1 + labels[:, None, None, None]).astype(np.float32)
    with _graph().as_default():
        tf.set_random_seed(1)
        child = MicroChild(num_classes=3, num_layers=0, num_cells=2, out_filters=4,
                           use_aux_heads=False, fixed_arc=(normal, reduce) if fixed else None,
                           lr_max=0.05, lr_min=0.05)
        arcs = () if fixed else (tf.constant(normal), tf.constant(reduce))
        t = child.build_train(tf.constant(images), tf.constant(labels, tf.int32), *arcs)
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            losses = [sess.run([t["loss"], t["train_op"]])[0] for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0], losses



@pytest.mark.parametrize("kernel", [3, 5])
def test_depthwise_filter_grad_matches_tensorflows_kernel(kernel):
    """ops.depthwise_filter_grad (one forward depthwise conv) is the filter gradient of
    TensorFlow's kernel, on a non-square map so a swapped H and W would show."""
    rng = np.random.RandomState(kernel)
    x_np, g_np = rng.randn(3, 7, 6, 4).astype(np.float32), rng.randn(3, 7, 6, 4).astype(np.float32)
    with _graph().as_default():
        x, g = tf.constant(x_np), tf.constant(g_np)
        want = tf.nn.depthwise_conv2d_native_backprop_filter(x, [kernel, kernel, 4, 1], g,
                                                             [1, 1, 1, 1], "SAME")
        got = ops.depthwise_filter_grad(x, g, kernel)
        with _session() as sess:
            want, got = sess.run([want, got])
    assert got.shape == (kernel, kernel, 4, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel, stride, uses_forward_grad", [(5, 1, True), (5, 2, False),
                                                                (3, 1, False)])
def test_separable_conv_same_outputs_and_gradients_as_plain_ops(kernel, stride, uses_forward_grad):
    """ops.separable_conv against the two plain ops: the same output and gradients (x, both
    filters); its pointwise conv is a MatMul, and only the stride-1 5x5 one replaces
    TensorFlow's depthwise filter-gradient kernel."""
    rng = np.random.RandomState(0)
    x_np = rng.randn(4, 9, 9, 6).astype(np.float32)
    wd_np, wp_np = rng.randn(kernel, kernel, 6, 1).astype(np.float32), rng.randn(1, 1, 6, 8).astype(np.float32)
    with _graph().as_default() as graph:
        x, w_depth, w_point = tf.constant(x_np), tf.constant(wd_np), tf.constant(wp_np)
        first = len(graph.get_operations())
        y = ops.separable_conv(x, w_depth, w_point, stride, "NHWC")
        got = [y] + tf.gradients(tf.reduce_sum(tf.square(y)), [x, w_depth, w_point])
        types_used = {op.type for op in graph.get_operations()[first:]}
        plain = tf.nn.conv2d(tf.nn.depthwise_conv2d_native(x, w_depth, [1, stride, stride, 1], "SAME"),
                             w_point, [1, 1, 1, 1], "VALID")
        want = [plain] + tf.gradients(tf.reduce_sum(tf.square(plain)), [x, w_depth, w_point])
        with _session() as sess:
            got, want = sess.run([got, want])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3 * np.abs(b).max())
    assert ("DepthwiseConv2dNativeBackpropFilter" not in types_used) == uses_forward_grad
    assert "MatMul" in types_used and "Conv2D" not in types_used  # the pointwise conv


def test_drop_path_zeroes_or_rescales_whole_examples():
    """ops.drop_path: each example is all zeros or x / keep_prob, some of each, and the gradient
    is the same per-example factor; the mask is a function of the seed alone (the same seed, the
    same mask, whatever ran before; another step's seed, another mask)."""
    x_np = np.random.RandomState(0).randn(64, 3, 3, 2).astype(np.float32) + 5.0
    with _graph().as_default():
        x, seed = tf.constant(x_np), tf.placeholder(tf.int64, [2])
        y = ops.drop_path(x, tf.constant(0.6), seed)
        grad = tf.gradients(tf.reduce_sum(y), x)[0]
        with _session() as sess:
            y, grad = sess.run([y, grad], {seed: [7, 3]})
            again, other_step = (sess.run(ops.drop_path(x, tf.constant(0.6), seed), {seed: s})
                                 for s in ([7, 3], [7, 4]))
    kept = np.all(y != 0, axis=(1, 2, 3))
    assert 0 < kept.sum() < len(kept) and np.all(y[~kept] == 0)
    np.testing.assert_allclose(y[kept], x_np[kept] / 0.6, rtol=1e-6)
    np.testing.assert_allclose(grad, np.where(kept, 1 / 0.6, 0)[:, None, None, None] * np.ones_like(x_np),
                               rtol=1e-6)
    np.testing.assert_array_equal(again, y)
    assert np.any((other_step != 0) != (y != 0))


def test_drop_path_keep_prob_schedule():
    """The keep probability of a cell's drop path falls linearly with the training step, from
    about 1 at the first step to its cell's own value at the last and after: 1 - (layer + 1) /
    (num_layers + 2) * (1 - drop_path_keep_prob), so the last cell ends at drop_path_keep_prob."""
    with _graph().as_default():
        child = _fixed_child(10, num_layers=1, num_epochs=2, drop_path_keep_prob=0.6)  # 20 steps
        keep = [child._drop_path_keep_prob(layer) for layer in range(3)]
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            by_step = {}
            for step in (0, 9, 19, 40):
                sess.run(child.global_step.assign(step))
                by_step[step] = sess.run(keep)
    final = [1 - 0.4 / 3, 1 - 0.8 / 3, 0.6]
    np.testing.assert_allclose(by_step[19], final, rtol=1e-6)
    np.testing.assert_allclose(by_step[40], final, rtol=1e-6)  # held after the last step
    np.testing.assert_allclose(by_step[9], [1 - 0.5 * (1 - f) for f in final], rtol=1e-6)
    np.testing.assert_allclose(by_step[0], [1 - 0.05 * (1 - f) for f in final], rtol=1e-6)


def test_batch_norm_moving_statistics_follow_training_and_serve_evaluation():
    """BN_TRAIN normalises with the batch's statistics and moves the moving averages 10 % toward
    them per run (the variance with Bessel's correction, as TensorFlow's fused kernel gives it);
    BN_MOVING normalises with the moving averages, so an example's output does not depend on the
    rest of its batch."""
    x_np = np.random.RandomState(0).normal(2.0, 3.0, [8, 4, 4, 3]).astype(np.float32)
    with _graph().as_default():
        x = tf.placeholder(tf.float32, [None, 4, 4, 3])
        with tf.variable_scope("cell"):
            trained = ops.batch_norm(x, ops.BN_TRAIN, "NHWC")
        with tf.variable_scope("cell", reuse=True):
            evaluated = ops.batch_norm(x, ops.BN_MOVING, "NHWC")
            mean, var = tf.get_variable("bn/moving_mean"), tf.get_variable("bn/moving_variance")
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(2):
                out = sess.run(trained, {x: x_np})
            moving = sess.run([mean, var])
            whole, first = (sess.run(evaluated, {x: batch}) for batch in (x_np, x_np[:1]))
    batch_mean, batch_var = x_np.mean((0, 1, 2)), x_np.var((0, 1, 2))
    np.testing.assert_allclose(out, (x_np - batch_mean) / np.sqrt(batch_var + 1e-5), atol=1e-4)
    unbiased = x_np.var((0, 1, 2), ddof=1)
    np.testing.assert_allclose(moving[0], 0.19 * batch_mean, rtol=1e-5)          # 0.1 + 0.9 * 0.1
    np.testing.assert_allclose(moving[1], 0.81 + 0.19 * unbiased, rtol=1e-5)
    np.testing.assert_allclose(whole, (x_np - moving[0]) / np.sqrt(moving[1] + 1e-5), atol=1e-4)
    np.testing.assert_allclose(first, whole[:1], atol=1e-6)


def test_recomputed_same_gradients_without_keeping_activations():
    """recompute.recomputed: the same gradients, and no gradient op reads a forward activation."""
    rng = np.random.RandomState(0)
    x_np, w_np = rng.randn(2, 6, 6, 3).astype(np.float32), rng.randn(3, 3, 3, 4).astype(np.float32)

    def fn(x, weights):
        y = tf.nn.conv2d(tf.nn.relu(x), weights["w"], [1, 1, 1, 1], "SAME")
        return tf.nn.relu(y) * 2.0

    with _graph().as_default() as g:
        x, w = tf.constant(x_np), tf.constant(w_np)
        plain = tf.gradients(tf.reduce_sum(tf.square(fn(x, dict(w=w)))), [x, w])
        first = len(g.get_operations())
        y = recompute.recomputed(fn, x, dict(w=w))
        forward_ops = set(g.get_operations()[first:])
        loss = tf.reduce_sum(tf.square(y))
        first = len(g.get_operations())
        again = tf.gradients(loss, [x, w])
        grad_ops = g.get_operations()[first:]
        with _session() as sess:
            want, got = sess.run([plain, again])
    for a, b in zip(want, got):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    activations = {op for op in forward_ops if op.type in ("Relu", "Conv2D", "Mul")}
    assert len(activations) == 4  # relu, conv, relu, mul
    readers = [op.name for op in grad_ops if any(t.op in activations for t in op.inputs)]
    assert readers == [], readers

def _search_grads(batch, arc):
    """{variable name: gradient} of a 3-layer search child (layer 0 is recomputed)."""
    with _graph().as_default():
        tf.set_random_seed(0)
        child = _search_child(num_layers=3, out_filters=4)
        assert child.pool_layers[0] == 1
        logits, _ = child.model(tf.constant(batch), True, tf.constant(arc), tf.constant(arc))
        variables = tf.trainable_variables()
        grads = [tf.convert_to_tensor(g) for g in tf.gradients(tf.reduce_sum(logits ** 2), variables)]
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            return dict(zip([v.op.name for v in variables], sess.run(grads)))


def _built_plainly(fn, *inputs, **_):
    """fn(*inputs) without recomputation; the TensorArrays it owns stay open."""
    return recompute._build(fn, inputs, tf.nest.flatten(inputs), recompute._Call())


def test_search_layer_recomputation_keeps_gradients(monkeypatch):
    """The recomputed full-resolution layer and the layers that free their nodes after their
    gradients: the same gradients as plain layers."""
    batch = np.random.RandomState(3).randn(4, 8, 8, 1).astype(np.float32)
    want_and_got = []
    for plain in (False, True):
        if plain:
            monkeypatch.setattr(recompute, "recomputed", _built_plainly)
        want_and_got.append(_search_grads(batch, CONV_ARC))
    got, want = want_and_got
    assert any("layer_0/" in n and np.any(g) for n, g in want.items())
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_recomputed_with_variable_and_tensor_array_same_gradients():
    """A recomputed fn that reads a variable and keeps values in a TensorArray (as a search
    layer does): the same gradients for input and variable as without recomputation."""
    x_np = np.random.RandomState(0).randn(4, 3).astype(np.float32)

    def fn(x):
        w = tf.get_variable("w", [3, 3], initializer=tf.initializers.random_normal(seed=1))
        nodes = tf.TensorArray(tf.float32, size=3, clear_after_read=False, element_shape=[4, 3])
        nodes = nodes.write(0, x).write(1, tf.matmul(x, w))
        nodes = nodes.write(2, nodes.read(tf.constant(1)) * nodes.read(tf.constant(0)))
        return tf.reduce_sum(recompute.own(nodes).gather(tf.constant([0, 2])), 0) * 1.5

    with _graph().as_default():
        x = tf.placeholder(tf.float32, [4, 3])
        with tf.variable_scope("f", reuse=tf.AUTO_REUSE):
            plain = _built_plainly(fn, x)
            again = recompute.recomputed(fn, x)
        w = tf.trainable_variables()
        assert len(w) == 1
        want = tf.gradients(tf.reduce_sum(tf.square(plain)), [x] + w)
        got = tf.gradients(tf.reduce_sum(tf.square(again)), [x] + w)
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            want, got = sess.run([want, got], {x: x_np})
    assert np.abs(want[0]).max() > 0 and np.abs(want[1]).max() > 0
    for a, b in zip(want, got):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_recomputed_copy_reuses_inner_outputs():
    """reuse_inner_outputs: the backward copy of an outer recomputed call takes the outputs of the
    recomputed calls inside it instead of running them again (the inner fn runs twice, not three
    times: forward and its own gradient), with the same gradients as without recomputation."""
    x_np = np.random.RandomState(1).randn(2, 5, 5, 3).astype(np.float32)
    inner_calls = []

    def inner(x):
        inner_calls.append(1)
        return tf.nn.relu(x) * tf.nn.relu(x + 1.0)

    def outer(x, recomputing):
        a = recompute.recomputed(inner, x) if recomputing else inner(x)
        b = recompute.recomputed(inner, a * 0.5) if recomputing else inner(a * 0.5)
        return tf.nn.avg_pool2d(a + b, 3, 1, "SAME") * x

    with _graph().as_default():
        x = tf.constant(x_np)
        want = tf.gradients(tf.reduce_sum(tf.square(outer(x, False))), x)
        inner_calls.clear()
        y = recompute.recomputed(lambda x: outer(x, True), x, reuse_inner_outputs=True)
        got = tf.gradients(tf.reduce_sum(tf.square(y)), x)
        assert len(inner_calls) == 4  # 2 calls x (forward + own gradient); the copy reused both
        with _session() as sess:
            want, got = sess.run([want, got])
    assert np.abs(want[0]).max() > 0
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)


def _differentiate_reusing_inner_calls(first_calls, copy_calls):
    """Builds the gradient of an outer recomputed call (reuse_inner_outputs) whose fn chains the
    recomputed calls named in first_calls in its first build, those in copy_calls in its backward
    copy ("double": 2x, "square": x^2)."""
    fns = {"double": lambda x: x * 2.0, "square": tf.square}
    builds = []

    def outer(x):
        builds.append(x)
        for name in first_calls if len(builds) == 1 else copy_calls:
            x = recompute.recomputed(fns[name], x)
        return x

    with _graph().as_default():
        x = tf.constant([1.5, -2.0])
        tf.gradients(tf.reduce_sum(recompute.recomputed(outer, x, reuse_inner_outputs=True)), x)
    assert len(builds) == 2  # the first build and the copy


def test_recomputed_copy_fails_unless_it_replays_the_recorded_calls_in_order():
    """The copy takes the first build's inner outputs by call order: a copy that makes other
    calls, or the same in another order, raises ReplayError naming the call expected, instead of
    differentiating square(double(x)) with double's output in square's place."""
    _differentiate_reusing_inner_calls(["double", "square"], ["double", "square"])
    with pytest.raises(recompute.ReplayError,
                       match=r"call 0 was expected to be \S*<lambda> .*, got square "):
        _differentiate_reusing_inner_calls(["double", "square"], ["square", "double"])
    with pytest.raises(recompute.ReplayError, match=r"made 1 of the 2 .* next expected was square "):
        _differentiate_reusing_inner_calls(["double", "square"], ["double"])
    with pytest.raises(recompute.ReplayError, match=r"did not make: square .*after the 1 recorded"):
        _differentiate_reusing_inner_calls(["double"], ["double", "square"])


def _square_via_owned_array(x):
    array = tf.TensorArray(tf.float32, size=1).write(0, tf.square(x))
    return recompute.own(array).read(0)


def test_recomputed_graph_fails_the_session_check_with_grappler_on():
    """A graph whose recomputed calls own TensorArrays needs grappler off
    (recompute.check_config); the scripts' search session config has it off; a graph without
    them (plain ops, or recomputed calls owning none: the fixed-arc child's) takes any config."""
    with _graph().as_default() as g:
        recompute.recomputed(_square_via_owned_array, tf.constant([1.0]))
        with pytest.raises(RuntimeError, match="disable_meta_optimizer"):
            recompute.check_config(tf.ConfigProto(), g)
        recompute.check_config(graph_lib.session_config(types.SimpleNamespace(num_threads=0)), g)
    with _graph().as_default() as plain:
        tf.square(tf.constant([1.0]))
        recompute.recomputed(tf.square, tf.constant([1.0]))
        recompute.check_config(tf.ConfigProto(), plain)


# ----------------------------------------------------------------------------- learning
def _small_data(tmp_path, make_png_dataset, size=12):
    dirs = make_png_dataset(tmp_path / "data", num_classes=3, per_class=(16, 4, 4), size=size,
                            seed=1)
    return data_utils.read_data(*dirs, channel=1, img_size=size, n_aug_img=1)


def _fixed_child(num_train_batches, **kw):
    args = dict(num_classes=3, num_layers=1, num_cells=2, out_filters=8, keep_prob=1.0,
                drop_path_keep_prob=None, l2_reg=1e-4, lr_max=0.05, lr_min=0.0005,
                num_train_batches=num_train_batches, num_epochs=20,
                fixed_arc=search_space.parse_arc(SMALL_FIXED, 2))
    args.update(kw)
    return MicroChild(**args)


def test_fixed_arc_loss_falls_on_learnable_data(tmp_path, make_png_dataset):
    data = _small_data(tmp_path, make_png_dataset)
    batches = data_utils.num_train_batches(len(data["labels"]["train"]), 1, 16)
    assert batches == 3
    with _graph().as_default():
        tf.set_random_seed(0)
        images, labels = tf.data.make_one_shot_iterator(
            data_utils.train_dataset(data, 16, seed=0)).get_next()
        child = _fixed_child(batches)
        t = child.build_train(images, labels)
        correct, _, _ = child.build_eval(tf.constant(((data["images"]["train"].astype(np.float32)
                                                    - data["mean"]) / data["std"])),
                                      tf.constant(data["labels"]["train"]))
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            losses = []
            for _ in range(45):
                loss, _ = sess.run([t["loss"], t["train_op"]])
                losses.append(loss)
            train_correct = sess.run(correct)
            step = sess.run(child.global_step)
    assert np.all(np.isfinite(losses))
    assert step == 45
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    assert train_correct > 48 // 3 + 8  # clearly above chance on the 48 training images


def _seeded_steps(data, recompute_mode, steps=3):
    """Trains the small fixed child (drop path, dropout, aux head and BN moving averages on)
    `steps` steps from one seeded start with --child_recompute recompute_mode: (losses, the
    first step's gradient of every variable, every variable after the steps)."""
    with _graph().as_default():
        tf.set_random_seed(0)
        images, labels = tf.data.make_one_shot_iterator(
            data_utils.train_dataset(data, 16, seed=0)).get_next()
        child = _fixed_child(3, num_layers=3, keep_prob=0.8, drop_path_keep_prob=0.6, seed=5,
                             recompute_mode=recompute_mode)
        t = child.build_train(images, labels)
        variables = tf.global_variables()
        grads = tf.gradients(t["loss"], [v for v in variables if v.trainable])
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            first_grads = sess.run(grads)  # the batch the first training step then trains on:
            losses = []                     # grads read the iterator once more, so after them
            for _ in range(steps):
                losses.append(sess.run([t["loss"], t["train_op"]])[0])
            return losses, first_grads, sess.run(variables)


@pytest.mark.parametrize("recompute_mode", ["sep_convs", "all"])
def test_recomputed_fixed_child_computes_the_same(tmp_path, make_png_dataset, recompute_mode):
    """--child_recompute changes memory, not maths: the same seeded steps give the same losses,
    gradients and weights (BN moving averages included: updated once per step, not again in
    the backward copy) as keeping every activation, up to float32 rounding."""
    data = _small_data(tmp_path, make_png_dataset)
    kept = _seeded_steps(data, "none")
    again = _seeded_steps(data, recompute_mode)
    np.testing.assert_allclose(again[0], kept[0], rtol=1e-5)
    for a, b in zip(again[1] + again[2], kept[1] + kept[2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert kept[0][-1] != kept[0][0]  # the steps trained


def _bf16_ops_and_first_losses(data, precision, steps=3):
    """Trains the small fixed child `steps` steps from one seeded start under --mixed_precision
    `precision`: (names of ops the session ran in bfloat16, losses, variable dtypes)."""
    with _graph().as_default():
        tf.set_random_seed(0)
        images, labels = tf.data.make_one_shot_iterator(
            data_utils.train_dataset(data, 16, seed=0)).get_next()
        t = _fixed_child(3).build_train(images, labels)
        flags = types.SimpleNamespace(num_threads=0, mixed_precision=precision)
        with tf.Session(config=graph_lib.session_config(flags, search=False)) as sess:
            sess.run(tf.global_variables_initializer())
            meta = tf.RunMetadata()
            losses = [sess.run([t["loss"], t["train_op"]], run_metadata=meta,
                               options=tf.RunOptions(output_partition_graphs=True))[0]]
            losses += [sess.run([t["loss"], t["train_op"]])[0] for _ in range(steps - 1)]
            dtypes = {v.dtype.base_dtype for v in tf.global_variables()}
    bf16 = [n.op for g in meta.partition_graphs for n in g.node
            if any(a.type == tf.bfloat16.as_datatype_enum for a in n.attr.values())]
    return bf16, losses, dtypes


def test_mixed_bfloat16_runs_convolutions_in_bfloat16_with_float32_variables(tmp_path,
                                                                            make_png_dataset):
    """--mixed_precision mixed_bfloat16: the rewrite puts the convolutions in bfloat16, the
    variables stay float32, the first loss matches float32's within bfloat16's precision and the
    loss falls."""
    data = _small_data(tmp_path, make_png_dataset)
    ops32, losses32, dtypes32 = _bf16_ops_and_first_losses(data, "none")
    ops16, losses16, dtypes16 = _bf16_ops_and_first_losses(data, "mixed_bfloat16")
    assert ops32 == [] and dtypes32 == dtypes16 and tf.float32 in dtypes16
    assert not {tf.bfloat16, tf.float16} & dtypes16
    assert any("Conv2D" in op for op in ops16), sorted(set(ops16))
    assert "Cast" in ops16
    # the first loss is of the same weights: equal up to bfloat16's rounding, but not equal
    assert abs(losses16[0] - losses32[0]) < 0.01 * losses32[0] and losses16[0] != losses32[0]
    assert np.all(np.isfinite(losses16)) and losses16[-1] < losses16[0]


def test_search_child_loss_falls_on_random_cells(tmp_path, make_png_dataset):
    """The shared child, trained on a new uniformly drawn cell every step (random search with
    weight sharing), learns the bar classes: its loss falls and the training images are
    classified well above chance by cells it never trained on as a whole."""
    from micro_controller import UniformSampler
    data = _small_data(tmp_path, make_png_dataset)
    with _graph().as_default():
        tf.set_random_seed(0)
        images, labels = tf.data.make_one_shot_iterator(
            data_utils.train_dataset(data, 16, seed=0)).get_next()
        child = MicroChild(num_classes=3, num_layers=1, num_cells=2, out_filters=8, keep_prob=1.0,
                           l2_reg=1e-4, num_train_batches=3, num_epochs=20, use_aux_heads=False)
        sampler = UniformSampler(num_cells=2)
        t = child.build_train(images, labels, *sampler.sample_arc)
        x_all = tf.constant((data["images"]["train"].astype(np.float32) - data["mean"]) / data["std"])
        correct, _, _ = child.build_eval(x_all, tf.constant(data["labels"]["train"]), *sampler.sample_arc)
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            losses = [sess.run([t["loss"], t["train_op"]])[0] for _ in range(60)]
            train_correct = np.mean([sess.run(correct) for _ in range(5)])  # 5 fresh cells
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5]), losses
    assert train_correct > 48 // 3 + 12, train_correct  # well above chance on 48 images


# ----------------------------------------------------------------------------- search mode
def _search_child(**kw):
    args = dict(num_classes=3, num_layers=0, num_cells=2, out_filters=4, keep_prob=1.0,
                use_aux_heads=False, l2_reg=0.0, fixed_arc=None)
    args.update(kw)
    return MicroChild(**args)


def test_search_child_same_output_for_sampled_and_fed_arc():
    batch = np.random.RandomState(0).randn(8, 8, 8, 1).astype(np.float32)
    with _graph().as_default():
        tf.set_random_seed(3)
        controller = MicroController(num_cells=2, tanh_constant=1.1, op_tanh_reduce=2.5)
        child = _search_child(num_layers=1)
        arcs = tuple(tf.placeholder_with_default(a, [8]) for a in controller.sample_arc)
        logits, aux = child.model(tf.constant(batch), False, *arcs)
        assert aux is None
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            seen = set()
            for _ in range(3):
                (normal, reduce), first = sess.run([controller.sample_arc, logits])
                second = sess.run(logits, {arcs[0]: normal, arcs[1]: reduce})
                np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)
                seen.add(search_space.arc_to_string(normal, reduce))
            # feeding really takes effect: two different arcs give different outputs
            a = sess.run(logits, {arcs[0]: CONV_ARC, arcs[1]: CONV_ARC})
            b = sess.run(logits, {arcs[0]: POOL_ARC, arcs[1]: POOL_ARC})
            a2 = sess.run(logits, {arcs[0]: CONV_ARC, arcs[1]: CONV_ARC})
    np.testing.assert_allclose(a, a2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a, b, atol=1e-4)


def _executed(run_metadata):
    """(node names, op types) that really ran in a traced session.run, constants left out.

    (Grappler folds shape computations of unchosen branches into constants, which always "run".)
    """
    names, types = set(), set()
    for dev in run_metadata.step_stats.dev_stats:
        for ns in dev.node_stats:
            label = ns.timeline_label
            op_type = label.split(" = ", 1)[1].split("(", 1)[0].strip() if " = " in label else ""
            if op_type != "Const":
                names.add(ns.node_name)
                types.add(op_type)
    return names, types


def _table(sess, name):
    var = [v for v in tf.global_variables() if v.op.name == name]
    assert len(var) == 1, name
    return sess.run(var[0])


def test_search_step_runs_only_sampled_branch_and_spares_unchosen_weights():
    batch = np.random.RandomState(1).randn(8, 8, 8, 1).astype(np.float32)
    with _graph().as_default():
        tf.set_random_seed(0)
        child = _search_child()
        assert child.pool_layers == [0, 1]  # both cells are reduction cells: reduce arc decides
        arcs = tuple(tf.placeholder_with_default(tf.constant(POOL_ARC), [8]) for _ in range(2))
        t = child.build_train(tf.constant(batch), tf.constant(np.arange(8) % 3, tf.int32), *arcs)
        tables = sorted(v.op.name for v in tf.trainable_variables()
                        if re.search(r"conv_[35]x[35]$", v.op.name))
        # 2 layers x 2 kernels, each row packs both stacks' weights; rows: 2 + 2 + 3 + 3
        assert len(tables) == 4
        options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            before = {n: _table(sess, n) for n in tables}

            meta = tf.RunMetadata()
            sess.run(t["train_op"], {arcs[0]: POOL_ARC, arcs[1]: POOL_ARC},
                     options=options, run_metadata=meta)
            names, types = _executed(meta)
            after_pool = {n: _table(sess, n) for n in tables}

            meta = tf.RunMetadata()
            sess.run(t["train_op"], {arcs[0]: CONV_ARC, arcs[1]: CONV_ARC},
                     options=options, run_metadata=meta)
            conv_names, conv_types = _executed(meta)
            after_conv = {n: _table(sess, n) for n in tables}
            assert sess.run(child.global_step) == 2

    def depthwise(ns, ts):
        return [x for x in ns | ts if "depthwise" in x.lower()]

    # the trace sees inside the branches: pools (and their gradients) ran
    assert any("MaxPool" in x for x in types) and any("AvgPool" in x for x in types)
    assert depthwise(names, types) == [], "a separable conv ran although no node chose one"
    assert depthwise(conv_names, conv_types), "the chosen separable conv did not run"
    assert any("DepthwiseConv2dNativeBackpropFilter" in x for x in conv_types)
    # only one sep conv slot per layer was chosen: its forward kernels ran (2 stacks x 2 layers),
    # not the 32 that exist in the graph (2 layers x 4 slots x 2 kernels x 2 stacks)
    forward = [x for x in conv_names
               if re.search(r"depthwise$", x) and "gradients" not in x and "recomputed" not in x]
    assert 1 <= len(forward) <= 4, forward

    # l2_reg = 0: a table nothing chose gets a zero gradient, so it does not move
    for n in tables:
        np.testing.assert_array_equal(after_pool[n], before[n], err_msg=n)
    for n in tables:
        assert after_conv[n].shape[0] == 10, n
        if n.endswith("/conv_3x3"):
            # slot 0 (node 2, x) chose input 1: row 1 moved, no other row did
            assert not np.array_equal(after_conv[n][1], after_pool[n][1]), n
            np.testing.assert_array_equal(np.delete(after_conv[n], 1, 0), np.delete(after_pool[n], 1, 0),
                                          err_msg=n)
        else:
            np.testing.assert_array_equal(after_conv[n], after_pool[n], err_msg=n)


def test_search_unchosen_branches_get_zero_gradient():
    batch = np.random.RandomState(2).randn(8, 8, 8, 1).astype(np.float32)
    with _graph().as_default():
        tf.set_random_seed(0)
        child = _search_child()
        arc = tf.placeholder_with_default(tf.constant(CONV_ARC), [8])
        logits, _ = child.model(tf.constant(batch), True, arc, arc)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            logits=logits, labels=tf.constant(np.arange(8) % 3, tf.int32)))
        variables = [v for v in tf.trainable_variables()
                     if re.search(r"layer_0/conv_[35]x[35]$", v.op.name)]
        assert len(variables) == 2  # one packed table per kernel
        grads = [tf.convert_to_tensor(g) for g in tf.gradients(loss, variables)]
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            pool_grads = sess.run(grads, {arc: POOL_ARC})
            conv_grads = sess.run(grads, {arc: CONV_ARC})
    for v, g in zip(variables, pool_grads):
        assert not np.any(g), v.op.name
    for v, g in zip(variables, conv_grads):
        if v.op.name.endswith("conv_3x3"):
            assert np.any(g[1]), v.op.name                # slot 0's chosen input (1) learns
            assert not np.any(np.delete(g, 1, 0)), v.op.name  # no other (slot, input) row does
        else:
            assert not np.any(g), v.op.name


def _layer0_tables(shared_init):
    """The initial conv_5x5 and final_conv tables of layer 0 (a 40-channel reduction cell)."""
    with _graph().as_default():
        tf.set_random_seed(0)
        child = _search_child(num_cells=5, out_filters=20, shared_init=shared_init)
        arc = tf.constant([0, 0, 1, 1] * 5)
        child.model(tf.zeros([2, 8, 8, 1]), True, arc, arc)
        tables = [v for v in tf.global_variables()
                  if v.op.name.endswith(("layer_0/conv_5x5", "layer_0/final_conv/w"))]
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            return sess.run(tables)


def _stacks(rows, c, k=5):
    """The two stacked blocks of packed rows, each split into w_depth, w_point, scale, offset."""
    block = [k * k * c, c * c, c, c]
    assert rows.shape[1] == 2 * sum(block)
    return [np.split(stack, np.cumsum(block)[:-1], axis=1)
            for stack in (rows[:, :sum(block)], rows[:, sum(block):])]


def test_shared_tables_he_start_like_the_fixed_childs_convs():
    """shared_init "he": every row's pieces are independent he_normal draws for their 4-D
    shapes (depthwise sqrt(2 / (k k C)), pointwise sqrt(2 / C)), not the original's
    fan_in = row count; BN scale 1, offset 0; the combine's rows as 1x1 convs on one node."""
    rows, combine = _layer0_tables("he")
    c = 40
    assert rows.shape[0] == sum(n + 2 for n in range(5) for _ in range(2))
    for w_depth, w_point, scale, offset in _stacks(rows, c):
        np.testing.assert_array_equal(scale, 1.0)
        np.testing.assert_array_equal(offset, 0.0)
        assert abs(w_depth.std() / np.sqrt(2.0 / (5 * 5 * c)) - 1) < 0.05
        assert abs(w_point.std() / np.sqrt(2.0 / c) - 1) < 0.05
        assert np.abs(w_point).max() <= 2 * np.sqrt(2.0 / c) / 0.8796 + 1e-6  # truncated at 2 std
        assert not np.allclose(w_point[0], w_point[1])
    assert combine.shape == (7, c * c)
    assert abs(combine.std() / np.sqrt(2.0 / c) - 1) < 0.05


def test_shared_tables_aligned_start_one_row_near_identity():
    """shared_init "aligned" (the default): all rows of a table are one draw; a sep conv row is
    a centred one-tap depthwise filter and the identity pointwise matrix plus 0.3 x he_normal
    noise; the combine's rows one he_normal draw."""
    rows, combine = _layer0_tables("aligned")
    c = 40
    np.testing.assert_array_equal(rows, np.tile(rows[:1], [len(rows), 1]))
    np.testing.assert_array_equal(combine, np.tile(combine[:1], [len(combine), 1]))
    for w_depth, w_point, scale, offset in _stacks(rows[:1], c):
        np.testing.assert_array_equal(scale, 1.0)
        np.testing.assert_array_equal(offset, 0.0)
        taps = w_depth.reshape(5, 5, c)
        np.testing.assert_allclose(taps[2, 2], 1.0, atol=0.1)
        off_centre = np.delete(taps.reshape(25, c), 12, axis=0)
        assert abs(off_centre.std() / (0.3 * np.sqrt(2.0 / (5 * 5 * c))) - 1) < 0.1
        noise = w_point.reshape(c, c) - np.eye(c)
        assert abs(noise.std() / (0.3 * np.sqrt(2.0 / c)) - 1) < 0.1
    assert abs(combine.std() / np.sqrt(2.0 / c) - 1) < 0.1


def test_shared_tables_authors_start_with_std_sqrt_2_over_rows():
    """shared_init "authors": the weights of each slot's rows have std sqrt(2 / rows of that
    slot) (the authors' he_normal on their [cell + 2, k*k*C] tables), rows independent; BN
    scale 1, offset 0; the combine's [B + 2, F * F] table std sqrt(2 / (B + 2))."""
    rows, combine = _layer0_tables("authors")
    c, first = 40, 0
    for size in [n + 2 for n in range(5) for _ in range(2)]:  # each slot's block of rows
        slot = rows[first:first + size]
        first += size
        for w_depth, w_point, scale, offset in _stacks(slot, c):
            np.testing.assert_array_equal(scale, 1.0)
            np.testing.assert_array_equal(offset, 0.0)
            for w in (w_depth, w_point):
                assert abs(w.std() / np.sqrt(2.0 / size) - 1) < 0.05, size
        assert not np.allclose(slot[0], slot[1])
    assert first == len(rows)
    assert abs(combine.std() / np.sqrt(2.0 / 7) - 1) < 0.05


# --------------------------------------------------------------------------- checkpoints
def _build_for_checkpoint(data, start_batch):
    """A seeded fixed child with dropout, drop path and cutout, training from batch start_batch."""
    images, labels = tf.data.make_one_shot_iterator(data_utils.train_dataset(
        data, 16, seed=0, cutout_size=4, start_batch=start_batch)).get_next()
    child = _fixed_child(6, keep_prob=0.8, drop_path_keep_prob=0.6, seed=0)
    t = child.build_train(images, labels)
    return child, t, tf.train.Saver(max_to_keep=1, save_relative_paths=True)


def _values():
    return {v.op.name: v.eval() for v in tf.global_variables()}


def test_checkpoint_restores_the_weights_and_resumes_the_same_steps(tmp_path, make_png_dataset):
    """checkpoints.save / latest / restore: a graph built afresh restores every variable,
    optimizer slots included, and its next steps (dropout, drop path, cutout and OpenCV
    augmentation on, across an epoch's end) equal the ones the saved run took."""
    dirs = make_png_dataset(tmp_path / "data", num_classes=3, per_class=(16, 4, 4), size=8, seed=1)
    data = data_utils.read_data(*dirs, channel=1, img_size=8, n_aug_img=2)  # 96 images, 6 batches
    ckpt_dir = str(tmp_path / "ckpt")
    os.makedirs(ckpt_dir)
    with _graph().as_default():
        tf.set_random_seed(0)
        child, t, saver = _build_for_checkpoint(data, 0)
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            initial = _values()
            for _ in range(3):
                sess.run(t["train_op"])
            checkpoints.save(sess, saver, ckpt_dir, 3)
            saved = _values()
            went_on = [sess.run([t["loss"], t["train_op"]])[0] for _ in range(4)]  # into epoch 2
            after = _values()
    assert saved["global_step"] == 3
    assert any("Momentum" in n for n in saved)  # optimizer slots are saved too
    changed = [n for n in saved if n != "global_step" and not np.array_equal(saved[n], initial[n])]
    assert changed, "training did not change any variable"

    prefix = checkpoints.latest(ckpt_dir)
    assert checkpoints.step_of(prefix) == 3
    with _graph().as_default():
        tf.set_random_seed(0)  # as a rerun of the same command: the shuffle's seed includes it
        child, t, saver = _build_for_checkpoint(data, checkpoints.step_of(prefix))
        with _session() as sess:
            sess.run(tf.global_variables_initializer())
            fresh = _values()
            checkpoints.restore(sess, saver, prefix, ckpt_dir)
            restored = _values()
            resumed = [sess.run([t["loss"], t["train_op"]])[0] for _ in range(4)]
            resumed_after = _values()
    assert any(not np.array_equal(fresh[n], saved[n]) for n in changed)
    assert set(restored) == set(saved)
    for n in saved:
        np.testing.assert_array_equal(restored[n], saved[n], err_msg=n)
    assert resumed == went_on
    for n in after:
        np.testing.assert_array_equal(resumed_after[n], after[n], err_msg=n)
