"""Tests of the pure helpers: arc parsing (search_space), cosine LR and clipping (optim),
reduction_layers and count_params (micro_child)."""
import math

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import tensorflow.compat.v1 as tf

import optim
import search_space
from micro_child import count_params, reduction_layers
from errors import UserError



def _ints(s):
    return [int(v) for v in s.split()]


# ----------------------------------------------------------------------------------- parse_arc
@pytest.mark.parametrize("text", [search_space.MNIST_ARC, search_space.CIFAR10_ARC])
def test_parse_arc_examples_split_into_halves(text):
    normal, reduce = search_space.parse_arc(text, 5)
    values = _ints(text)
    assert normal == values[:20]
    assert reduce == values[20:]
    assert all(isinstance(v, int) for v in normal + reduce)


def test_parse_arc_mnist_exact_halves():
    normal, reduce = search_space.parse_arc(search_space.MNIST_ARC, 5)
    assert normal == [1, 2, 1, 3, 0, 1, 0, 4, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1]
    assert reduce == [0, 1, 0, 4, 1, 0, 2, 0, 0, 3, 1, 1, 0, 0, 0, 0, 4, 1, 1, 0]


def test_parse_arc_cifar_exact_halves():
    normal, reduce = search_space.parse_arc(search_space.CIFAR10_ARC, 5)
    assert normal == [1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 3, 0, 3, 1, 3, 1, 1]
    assert reduce == [1, 1, 0, 3, 0, 3, 0, 3, 1, 3, 0, 1, 1, 3, 0, 2, 0, 3, 1, 0]


def test_parse_arc_accepts_extra_whitespace_and_newlines():
    text = "  " + search_space.MNIST_ARC.replace(" ", "\t", 3).replace(" 0 1 0 4", "\n0 1 0 4", 1) + "\n"
    assert search_space.parse_arc(text, 5) == search_space.parse_arc(search_space.MNIST_ARC, 5)


def test_parse_arc_reads_a_file(tmp_path):
    path = tmp_path / "best_arc.txt"
    path.write_text(search_space.CIFAR10_ARC + "\n")
    assert search_space.parse_arc(str(path), 5) == search_space.parse_arc(search_space.CIFAR10_ARC, 5)


def test_parse_arc_small_num_cells():
    normal, reduce = search_space.parse_arc("0 4 1 2 2 0 0 3 1 1 0 0 2 3 1 4", 2)
    assert normal == [0, 4, 1, 2, 2, 0, 0, 3]
    assert reduce == [1, 1, 0, 0, 2, 3, 1, 4]


@pytest.mark.parametrize("text", [
    " ".join(search_space.MNIST_ARC.split()[:-1]),           # 39 integers
    search_space.MNIST_ARC + " 0",                           # 41 integers
    "",                                         # empty
    "   \n ",                                   # whitespace only
    "2" + search_space.MNIST_ARC[1:],                        # node 2 reads input 2 (itself): forward index
    search_space.MNIST_ARC[:-1] + "5",                       # op id 5
    search_space.MNIST_ARC[:-1] + "-1",                      # negative op
    search_space.MNIST_ARC.replace("1 3 0 1", "6 3 0 1", 1),  # index 6 for node 2..
    search_space.MNIST_ARC[:-1] + "x",                       # not an integer
    search_space.MNIST_ARC[:-1] + "1.0",                     # not an integer
    search_space.MNIST_ARC.replace(" ", ",")                 # wrong separator
])
def test_parse_arc_rejects_bad_input_with_user_error(text):
    with pytest.raises(UserError) as info:
        search_space.parse_arc(text, 5)
    message = str(info.value)
    assert "--child_fixed_arc" in message
    assert "\n" not in message


@pytest.mark.parametrize("token", ["\u00b9", "--1", "\u00b2\u00b3", "-\u00b9"])
def test_parse_arc_odd_digit_tokens_raise_user_error(token):
    # tokens for which str.isdigit() is True (after stripping '-') but int() fails
    with pytest.raises(UserError, match="--child_fixed_arc"):
        search_space.parse_arc(ZEROS_15 + " " + token, 2)


def test_parse_arc_binary_file_raises_user_error(tmp_path):
    path = tmp_path / "arc.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x80" * 4)
    with pytest.raises(UserError, match="--child_fixed_arc"):
        search_space.parse_arc(str(path), 2)


def test_parse_arc_forward_index_in_later_node():
    # node 3 (second group) may use 0..2; 3 is a forward reference
    arc = _ints(search_space.MNIST_ARC)
    arc[4] = 3
    with pytest.raises(UserError, match="--child_fixed_arc"):
        search_space.parse_arc(" ".join(map(str, arc)), 5)
    arc[4] = 2  # the largest legal index of node 3
    assert search_space.parse_arc(" ".join(map(str, arc)), 5)[0][4] == 2


def test_parse_arc_reduce_half_is_checked_too():
    arc = _ints(search_space.MNIST_ARC)
    arc[21] = 5  # first op of the reduction cell
    with pytest.raises(UserError, match="--child_fixed_arc"):
        search_space.parse_arc(" ".join(map(str, arc)), 5)


def test_parse_arc_wrong_num_cells_names_expected_count():
    with pytest.raises(UserError, match="32"):
        search_space.parse_arc(search_space.MNIST_ARC, 4)


def _valid_arc(arc, num_cells):
    if len(arc) != 4 * num_cells:
        return False
    for pos, v in enumerate(arc):
        node = pos // 4 + 2
        if pos % 2 == 0 and not 0 <= v < node:
            return False
        if pos % 2 == 1 and not 0 <= v < 5:
            return False
    return True


ZEROS_15 = " ".join(["0"] * 15)


def _parse_or_user_error(text):
    """parse_arc(text, 2) either gives two valid arcs (returned) or a UserError naming the flag
    (None is returned); any other exception fails the test."""
    try:
        normal, reduce = search_space.parse_arc(text, 2)
    except UserError as e:
        assert "--child_fixed_arc" in str(e)
        return None
    assert _valid_arc(normal, 2) and _valid_arc(reduce, 2)
    return normal, reduce


@settings(max_examples=300, deadline=None)
@given(st.text())
@example(ZEROS_15 + " \u00b9")   # superscript one: str.isdigit() but not int()
@example(ZEROS_15 + " --1")
@example(ZEROS_15 + " 1.5")
@example(ZEROS_15 + " -1")
def test_parse_arc_random_text_parses_or_raises_user_error(text):
    _parse_or_user_error(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 8).map(str),
                          st.sampled_from(["a", "1.5", "", "٣", "+1", "0x1", "¹", "--1"])),
                min_size=14, max_size=18),
       st.sampled_from([" ", "  ", "\t", "\n"]))
def test_parse_arc_near_valid_tokens_parse_or_raise_user_error(tokens, sep):
    text = sep.join(tokens)
    arcs = _parse_or_user_error(text)
    if arcs is not None:
        assert [int(t) for t in text.split()] == arcs[0] + arcs[1]


@st.composite
def _arcs(draw, num_cells):
    arc = []
    for node in range(2, num_cells + 2):
        for _ in range(2):
            arc.append(draw(st.integers(0, node - 1)))
            arc.append(draw(st.integers(0, 4)))
    return arc


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 7).flatmap(lambda b: st.tuples(st.just(b), _arcs(b), _arcs(b))))
def test_arc_to_string_round_trips(args):
    num_cells, normal, reduce = args
    text = search_space.arc_to_string(normal, reduce)
    assert search_space.parse_arc(text, num_cells) == (normal, reduce)
    assert len(text.split()) == 8 * num_cells


def test_arc_to_string_round_trips_examples():
    for text in (search_space.MNIST_ARC, search_space.CIFAR10_ARC):
        assert search_space.arc_to_string(*search_space.parse_arc(text, 5)) == text


def test_arc_to_string_accepts_numpy_arrays():
    normal = np.array([0, 4, 1, 2, 2, 0, 0, 3], dtype=np.int32)
    reduce = np.array([1, 1, 0, 0, 2, 3, 1, 4], dtype=np.int32)
    assert search_space.arc_to_string(normal, reduce) == "0 4 1 2 2 0 0 3 1 1 0 0 2 3 1 4"


# ------------------------------------------------------------------------------- cosine LR
LR = dict(lr_max=0.05, lr_min=0.0005, T_0=10, T_mul=2)


def _formula(epoch, start, T_i, lr_max=0.05, lr_min=0.0005):
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * (epoch - start) / T_i))


@pytest.mark.parametrize("epoch", [0, 10, 30, 70, 150])
def test_cosine_lr_is_lr_max_at_restarts(epoch):
    assert optim.cosine_lr_value(epoch, **LR) == pytest.approx(0.05, abs=1e-12)


def test_cosine_lr_not_lr_max_just_before_restart():
    for epoch in (9, 29, 69):
        assert optim.cosine_lr_value(epoch, **LR) < 0.01


@pytest.mark.parametrize("start,length", [(0, 10), (10, 20), (30, 40)])
def test_cosine_lr_strictly_decreasing_inside_a_cycle(start, length):
    values = [optim.cosine_lr_value(e, **LR) for e in range(start, start + length)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert all(0.0005 <= v <= 0.05 for v in values)


def test_cosine_lr_matches_formula():
    assert optim.cosine_lr_value(9, **LR) == pytest.approx(_formula(9, 0, 10), rel=1e-12)
    assert optim.cosine_lr_value(5, **LR) == pytest.approx((0.05 + 0.0005) / 2, rel=1e-12)
    assert optim.cosine_lr_value(25, **LR) == pytest.approx(_formula(25, 10, 20), rel=1e-12)
    assert optim.cosine_lr_value(50, **LR) == pytest.approx(_formula(50, 30, 40), rel=1e-12)


def test_cosine_lr_t_mul_1_is_periodic():
    args = dict(lr_max=0.1, lr_min=0.0, T_0=4, T_mul=1)
    for e in range(4):
        assert optim.cosine_lr_value(e, **args) == pytest.approx(optim.cosine_lr_value(e + 8, **args))


def test_cosine_lr_graph_matches_python_across_restarts():
    num_train_batches = 3
    steps = list(range(0, 3 * 75))
    with tf.Graph().as_default():
        step = tf.placeholder(tf.int64, [])
        lr = optim.cosine_lr(step, num_train_batches, **LR)
        with tf.Session() as sess:
            got = [sess.run(lr, {step: s}) for s in steps]
    want = [optim.cosine_lr_value(s // num_train_batches, **LR) for s in steps]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # restarts at epochs 10, 30, 70 really reach lr_max, one step earlier it is small
    for epoch in (10, 30, 70):
        assert got[epoch * 3] == pytest.approx(0.05, rel=1e-6)
        assert got[epoch * 3 - 1] < 0.01


def test_cosine_lr_graph_with_global_step_variable():
    with tf.Graph().as_default():
        gs = tf.train.get_or_create_global_step()
        lr = optim.cosine_lr(gs, 3, lr_max=0.1, lr_min=0.001, T_0=2, T_mul=2)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for s in (0, 5, 6, 17, 18, 42):
                sess.run(gs.assign(s))
                want = optim.cosine_lr_value(s // 3, 0.1, 0.001, 2, 2)
                assert sess.run(lr) == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------------------- clipping
def test_clip_gradients_really_clips():
    with tf.Graph().as_default():
        a = tf.constant([3.0, 4.0])             # norm 5
        b = tf.constant([[0.0, 0.0], [0.0, math.sqrt(75.0)]])  # total norm sqrt(25 + 75) = 10
        clipped, norm = optim.clip_gradients([a, b], 5.0)
        with tf.Session() as sess:
            clipped_v, norm_v, new_norm = sess.run([clipped, norm, tf.linalg.global_norm(clipped)])
    assert norm_v == pytest.approx(10.0, rel=1e-6)
    assert new_norm == pytest.approx(5.0, rel=1e-6)
    np.testing.assert_allclose(clipped_v[0], [1.5, 2.0], rtol=1e-6)


def test_clip_gradients_leaves_small_gradients_alone():
    with tf.Graph().as_default():
        a = tf.constant([0.3, 0.4])
        clipped, norm = optim.clip_gradients([a], 5.0)
        with tf.Session() as sess:
            clipped_v, norm_v = sess.run([clipped, norm])
    assert norm_v == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_allclose(clipped_v[0], [0.3, 0.4], rtol=1e-6)


def test_clip_gradients_handles_none_gradients():
    with tf.Graph().as_default():
        a = tf.constant([6.0, 8.0])
        clipped, norm = optim.clip_gradients([a, None], 5.0)
        assert clipped[1] is None
        with tf.Session() as sess:
            clipped_v, norm_v = sess.run([clipped[0], norm])
    assert norm_v == pytest.approx(10.0, rel=1e-6)
    np.testing.assert_allclose(clipped_v, [3.0, 4.0], rtol=1e-6)


def test_count_params():
    with tf.Graph().as_default():
        a = tf.get_variable("a", [3, 4])
        b = tf.get_variable("b", [5])
        assert count_params([a, b]) == 17


# ---------------------------------------------------------------------- reduction layers
@pytest.mark.parametrize("n", range(16))
def test_reduction_layers(n):
    assert reduction_layers(n) == [n // 3, 2 * (n // 3) + 1]
    ids = reduction_layers(n)
    assert 0 <= ids[0] < ids[1] < n + 2  # two distinct reductions among the n + 2 cells


def test_reduction_layers_examples():
    assert reduction_layers(6) == [2, 5]
    assert reduction_layers(15) == [5, 11]
    assert reduction_layers(0) == [0, 1]
    assert reduction_layers(2) == [0, 1]


def test_logger_ends_a_line_cut_short_and_only_then(tmp_path, capsys):
    """A Ctrl-C between print()'s text and its newline: the next message still starts a line."""
    import utils
    path = str(tmp_path / "stdout")
    log = utils.Logger(path)
    log.write("epoch = 1   ch_step = 11")
    log.end_line()
    log.write("Interrupted\n")
    log.end_line()
    assert open(path).read() == "epoch = 1   ch_step = 11\nInterrupted\n"
    assert capsys.readouterr().out == "epoch = 1   ch_step = 11\nInterrupted\n"
