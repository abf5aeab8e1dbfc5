"""Tests of micro_controller.MicroController (sampler and REINFORCE trainer)."""
import os
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_v2_behavior()
tf.enable_resource_variables()

import reward as reward_lib  # noqa: E402
from micro_controller import MicroController, UniformSampler  # noqa: E402


def _session(graph):
    sess = tf.Session(graph=graph)
    with graph.as_default():
        sess.run(tf.global_variables_initializer())
    return sess


def _controller_vars(graph):
    with graph.as_default():
        return [v for v in tf.trainable_variables()
                if v.name.startswith("controller/")]


@pytest.mark.parametrize("num_cells", [2, 5, 7])
def test_sampler_emits_valid_arcs(num_cells):
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(1)
        ctrl = MicroController(num_cells=num_cells, tanh_constant=1.1,
                               op_tanh_reduce=2.5)
    sess = _session(graph)
    seen_ops, seen_idx = set(), set()
    for _ in range(200):
        for arc in sess.run(ctrl.sample_arc):
            assert arc.dtype == np.int32 and arc.shape == (4 * num_cells,)
            nodes = np.arange(4 * num_cells) // 4 + 2
            idx, ops = arc[0::2], arc[1::2]
            assert np.all(idx >= 0) and np.all(idx < nodes[0::2])
            assert np.all(ops >= 0) and np.all(ops < 5)
            seen_ops.update(ops.tolist())
            seen_idx.update(idx.tolist())
    sess.close()
    assert seen_ops == set(range(5))
    assert seen_idx == set(range(num_cells + 1))


def _log_softmax(x):
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


@pytest.mark.parametrize("kwargs", [
    dict(tanh_constant=1.1, op_tanh_reduce=2.5),
    dict(tanh_constant=1.5, op_tanh_reduce=2.0, temperature=5.0),
    dict()])
def test_log_prob_and_entropy_match_numpy(kwargs):
    num_cells, nb = 5, 5
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(2)
        ctrl = MicroController(num_cells=num_cells, num_branches=nb, **kwargs)
    sess = _session(graph)
    arcs, logits, ent, log_prob = sess.run(
        [ctrl.sample_arc, ctrl.sample_logits, ctrl.sample_entropy,
         ctrl.sample_log_prob])
    sess.close()
    want_lp, want_ent = 0.0, 0.0
    for arc, rows in zip(arcs, logits):
        for r, (choice, row) in enumerate(zip(arc, rows)):
            width = r // 4 + 2 if r % 2 == 0 else nb
            assert np.all(row[width:] == 0)
            logp = _log_softmax(row[:width].astype(np.float64))
            want_lp -= logp[choice]
            want_ent -= np.sum(np.exp(logp) * logp)
    np.testing.assert_allclose(log_prob, want_lp, rtol=1e-4)
    np.testing.assert_allclose(ent, want_ent, rtol=1e-4)


def _op0_fraction(sample_arc):
    ops = tf.concat([sample_arc[0][1::2], sample_arc[1][1::2]], axis=0)
    return tf.reduce_mean(tf.cast(tf.equal(ops, 0), tf.float32))


def test_controller_learns_synthetic_reward():
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(3)
        ctrl = MicroController(num_cells=5, lr=0.02, num_aggregate=2, bl_dec=0.9)
        fraction = _op0_fraction(ctrl.sample_arc)
        ctrl.build_trainer(reward_lib.controller_reward(fraction, ctrl.sample_entropy, 1e-4))
    sess = _session(graph)
    fractions = []
    for _ in range(300):
        acc, _ = sess.run([fraction, ctrl.train_op])
        fractions.append(acc)
    steps = sess.run(ctrl.train_step)
    sess.close()
    assert steps == 150
    first, last = np.mean(fractions[:50]), np.mean(fractions[-50:])
    assert last > first + 0.2, (first, last)


def _op_fraction(sample_arc, op):
    """Fraction of the op decisions (both cells) that pick op."""
    ops = tf.concat([sample_arc[0][1::2], sample_arc[1][1::2]], axis=0)
    return tf.reduce_mean(tf.cast(tf.equal(ops, op), tf.float32))


@pytest.mark.parametrize("baseline,advantage_norm,common", [("ema", False, False), ("loo", True, True)])
def test_controller_at_the_default_tanh_constants_moves_toward_a_rewarded_op(baseline, advantage_norm,
                                                                             common):
    """The search's logit squashing (tanh constant 1.10, op_tanh_reduce 2.5): rewarded for
    picking op 2 (avg pool), the controller picks it more often within 60 updates; a flipped
    REINFORCE sign would make it rarer. The learning rate is raised from the search's 0.0035 to
    0.1 so that this shows within a test's budget: at 0.0035 the same move takes thousands of
    samples (the op logits are c * tanh(.) with c = 0.44, and the sep convs' start bias of 10
    saturates their tanh).

    With the leave-one-out baseline, the normalised advantage and a common reward batch, the
    reward also carries a batch's noise (std 0.3, far above what a cell changes) drawn from the
    sample's reward batch key (reward.controller_keys): one batch per update, whose noise the
    leave-one-out advantage cancels."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(5)
        ctrl = MicroController(num_cells=3, tanh_constant=1.10, op_tanh_reduce=2.5, lr=0.1,
                               bl_dec=0.9, advantage_norm=advantage_norm, baseline=baseline)
        fraction = _op_fraction(ctrl.sample_arc, 2)
        noise = tf.placeholder_with_default(0.0, [])
        ctrl.build_trainer(reward_lib.controller_reward(fraction + noise, ctrl.sample_entropy, 1e-4))
    sess = _session(graph)
    fractions = []
    for run in range(600):
        batch_key = reward_lib.controller_keys(run, run // 10, common)[1]
        batch_noise = np.random.default_rng(batch_key.tolist()).normal(0.0, 0.3) if common else 0.0
        fractions.append(sess.run([fraction, ctrl.train_op], {noise: batch_noise})[0])
    assert sess.run(ctrl.train_step) == 60
    sess.close()
    first, last = np.mean(fractions[:100]), np.mean(fractions[-150:])
    assert last > first + 0.04, (first, last)


def test_reinforce_gradient_is_the_advantage_times_grad_log_pi():
    """The gradient the controller accumulates for the op-logit bias b_soft equals, in closed form,
    (R - b) * sum over op decisions of d(-log pi)/d b_soft, where the op logits are
    c * tanh(h w + b_soft) (+ a fixed bias in the normal cell; c = tanh_constant / op_tanh_reduce), so
    d(-log pi)/d b_soft = c * (1 - tanh^2) * (softmax(logits) - onehot(choice));
    and the reward is the accuracy plus entropy_weight times the sample's entropy."""
    c = 1.10 / 2.5
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(6)
        acc = tf.placeholder(tf.float32, [])
        ctrl = MicroController(num_cells=3, tanh_constant=1.10, op_tanh_reduce=2.5, bl_dec=0.9)
        ctrl.build_trainer(reward_lib.controller_reward(acc, ctrl.sample_entropy, 0.01))
        unsaturate = ctrl.b_soft.assign(tf.zeros_like(ctrl.b_soft))  # tanh' of 10 is ~0
        names = [a.op.name for a in ctrl.accumulators]
    grad_b = ctrl.grads[names.index("controller/accum/softmax/b")]
    sess = _session(graph)
    sess.run(unsaturate)
    fetched = sess.run([ctrl.sample_arc, ctrl.sample_logits, grad_b, ctrl.reward, ctrl.baseline,
                        ctrl.sample_entropy, ctrl.b_soft_no_learn], {acc: 0.8})
    sess.close()
    arcs, logits, grad, reward, baseline, entropy, bias = fetched
    nb = bias.shape[1]
    expected = np.zeros(nb)
    for arc, rows, cell_bias in zip(arcs, logits, (bias[0], 0.0)):  # reduce: no fixed bias
        for pos in range(1, len(arc), 2):  # the op decisions
            z = rows[pos, :nb]
            p = np.exp(z - z.max())
            p /= p.sum()
            expected += c * (1 - ((z - cell_bias) / c) ** 2) * (p - np.eye(nb)[arc[pos]])
    np.testing.assert_allclose(reward, 0.8 + 0.01 * entropy, rtol=1e-6)
    np.testing.assert_allclose(baseline, 0.1 * reward, rtol=1e-6)
    np.testing.assert_allclose(grad[0], (reward - baseline) * expected, rtol=1e-4, atol=1e-7)


def test_advantage_norm_divides_by_the_running_rms_and_reset_takes_it_back():
    """--controller_advantage_norm: advantage = (R - b) / sqrt(EMA of (R - b)^2), the EMA
    starting at the first square; the accumulated gradient is that advantage times
    d(sum -log pi); reset_op restores the square as the baseline."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(2)
        acc = tf.placeholder(tf.float32, [])
        ctrl = MicroController(num_cells=2, bl_dec=0.5, advantage_norm=True)
        ctrl.build_trainer(acc)
        params = _controller_vars(graph)
        grad_log_prob = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)  # dense
                         for g, v in zip(tf.gradients(ctrl.sample_log_prob, params), params)]
        square = [v for v in ctrl.moving_stats if v.op.name.endswith("advantage_square")][0]
    sess = _session(graph)
    expected_square = 0.0
    for reward, expected_baseline in ((0.8, 0.4), (0.2, 0.3)):
        advantage, baseline, grads, d_log_prob = sess.run(
            [ctrl.advantage, ctrl.baseline, ctrl.grads, grad_log_prob], {acc: reward})
        raw = reward - expected_baseline
        expected_square = raw ** 2 if expected_square == 0 else 0.5 * expected_square + 0.5 * raw ** 2
        np.testing.assert_allclose(baseline, expected_baseline, rtol=1e-6)
        np.testing.assert_allclose(advantage, raw / np.sqrt(expected_square), rtol=1e-4)
        for g, d in zip(grads, d_log_prob):
            np.testing.assert_allclose(g, advantage * d, rtol=1e-4, atol=1e-7)
    assert abs(advantage) < 1.0  # the second advantage is scaled by both samples' RMS
    sess.run(ctrl.reset_op)
    assert sess.run([square, ctrl.baseline_var]) == [0.0, 0.0]
    sess.close()


def test_gradients_accumulate_and_apply_every_num_aggregate():
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(4)
        ctrl = MicroController(num_cells=3, num_aggregate=3)
        ctrl.build_trainer(tf.constant(0.5))
    params = _controller_vars(graph)
    sess = _session(graph)
    before = sess.run(params)
    grad_sum = [np.zeros_like(p) for p in before]
    for run in range(2):
        grads, _ = sess.run([ctrl.grads, ctrl.train_op])
        grad_sum = [s + g for s, g in zip(grad_sum, grads)]
        assert sess.run(ctrl.train_step) == 0
        assert sess.run(ctrl.accum_count) == run + 1
        for b, a in zip(before, sess.run(params)):
            np.testing.assert_array_equal(a, b)
    for s, a in zip(grad_sum, sess.run(ctrl.accumulators)):
        np.testing.assert_allclose(a, s, rtol=1e-5, atol=1e-7)
    sess.run(ctrl.train_op)
    assert sess.run(ctrl.train_step) == 1
    assert sess.run(ctrl.accum_count) == 0
    after = sess.run(params)
    assert any(not np.array_equal(a, b) for a, b in zip(after, before))
    for a in sess.run(ctrl.accumulators):
        assert not a.any()
    sess.close()


def _two_seeded_samplers(sampler, run_seed=7):
    """(step placeholder int64 [], first, second): two separate seeded samplers of the same
    weights, as two workers build them, each (normal, reduce) seeded by (run_seed, step)."""
    step = tf.placeholder(tf.int64, [])
    seed = tf.stack([tf.constant(run_seed, tf.int64), step * 40])
    first, second = sampler.seeded_sample_arc(seed), sampler.seeded_sample_arc(seed)
    return step, first, second


@pytest.mark.parametrize("kind", ["controller", "uniform"])
def test_seeded_sampler_is_a_function_of_the_step_with_the_samplers_distribution(kind):
    """The cluster's cell of a global step: the same in every process that reads the same step and
    weights, different across steps, and drawn from the same distribution as sample_arc."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(3)
        sampler = (MicroController(num_cells=5, tanh_constant=1.1, op_tanh_reduce=2.5)
                   if kind == "controller" else UniformSampler(5))
        step, first, second = _two_seeded_samplers(sampler)
        init = tf.global_variables_initializer()
    sess = tf.Session(graph=graph)
    sess.run(init)
    seeded, stateful = [], []
    for s in range(400):
        a, b = sess.run([first, second], {step: s})
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(a[0], sess.run(first, {step: s})[0])  # and on a rerun
        seeded.append(np.concatenate(a))
        stateful.append(np.concatenate(sess.run(sampler.sample_arc)))
    sess.close()
    assert len({tuple(x) for x in seeded}) == 400  # 400 steps, 400 different cells
    seeded, stateful = np.array(seeded), np.array(stateful)
    for column in (slice(1, None, 2), slice(0, None, 2)):  # ops, then input indices
        for value in range(5):
            f_seeded = np.mean(seeded[:, column] == value)
            f_stateful = np.mean(stateful[:, column] == value)
            assert abs(f_seeded - f_stateful) < 0.03, (column, value, f_seeded, f_stateful)


def test_cluster_trainer_accumulates_in_train_op_and_applies_in_apply_op():
    """apply_in_train_op=False (a cluster): train_op only adds each sample's gradients; apply_op
    applies their average once, zeroes the accumulators, and only then counts the step;
    reset_op drops a partial update."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(4)
        ctrl = MicroController(num_cells=3, num_aggregate=3)
        ctrl.build_trainer(tf.constant(0.5), apply_in_train_op=False)
    params = _controller_vars(graph)
    sess = _session(graph)
    before = sess.run(params)
    grad_sum = [np.zeros_like(p) for p in before]
    for run in range(4):  # one more than num_aggregate: train_op never applies
        grads, _ = sess.run([ctrl.grads, ctrl.train_op])
        grad_sum = [s + g for s, g in zip(grad_sum, grads)]
    assert sess.run(ctrl.train_step) == 0 and sess.run(ctrl.accum_count) == 4
    for b, a in zip(before, sess.run(params)):
        np.testing.assert_array_equal(a, b)
    for s, a in zip(grad_sum, sess.run(ctrl.accumulators)):
        np.testing.assert_allclose(a, s, rtol=1e-5, atol=1e-7)
    sess.run(ctrl.apply_op)
    assert sess.run(ctrl.train_step) == 1 and sess.run(ctrl.accum_count) == 0
    assert any(not np.array_equal(a, b) for a, b in zip(sess.run(params), before))
    assert not any(a.any() for a in sess.run(ctrl.accumulators))
    sess.run(ctrl.train_op)
    sess.run(ctrl.reset_op)
    assert sess.run(ctrl.accum_count) == 0 and not any(a.any() for a in sess.run(ctrl.accumulators))
    sess.close()


def test_baseline_follows_ema():
    r, bl_dec = 0.7, 0.9
    graph = tf.Graph()
    with graph.as_default():
        ctrl = MicroController(num_cells=2, bl_dec=bl_dec)
        ctrl.build_trainer(tf.constant(r))
    sess = _session(graph)
    reward, bl, _ = sess.run([ctrl.reward, ctrl.baseline, ctrl.train_op])
    stored = sess.run(ctrl.baseline_var)
    sess.close()
    np.testing.assert_allclose(reward, r, rtol=1e-6)
    np.testing.assert_allclose(bl, (1 - bl_dec) * r, rtol=1e-6)
    np.testing.assert_allclose(stored, (1 - bl_dec) * r, rtol=1e-6)


def test_warmup_steps_train_uniform_cells_then_the_controllers():
    """--uniform_warmup_epochs: the search's training cell of a global step below the warm-up's
    steps is the uniform sampler's draw from that step's seed, from then on the controller's."""
    import graph as graph_lib
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(5)
        controller = MicroController(num_cells=3, tanh_constant=1.1, op_tanh_reduce=2.5)
        g = types.SimpleNamespace(cell_seed=tf.Variable(tf.constant(7, tf.int64)),
                                  uniform_sampler=UniformSampler(3), sampler=controller)
        global_step = tf.Variable(tf.constant(0, tf.int64))
        step = tf.placeholder(tf.int64, [])
        set_step = global_step.assign(step)
        _, cell = graph_lib._cell_of_step(g, global_step, 3, warmup_steps=4)
        seed = tf.stack([tf.constant(7, tf.int64), step * 8 * 3])
        uniform = g.uniform_sampler.seeded_sample_arc(seed)
        controller = g.sampler.seeded_sample_arc(seed)
    sess = _session(graph)
    sources = []
    for s in range(8):
        sess.run(set_step, {step: s})
        trained, u, c = (np.concatenate(a) for a in sess.run([cell, uniform, controller], {step: s}))
        assert not np.array_equal(u, c), s  # the test can tell them apart
        sources.append("uniform" if np.array_equal(trained, u) else
                       "controller" if np.array_equal(trained, c) else None)
    sess.close()
    assert sources == ["uniform"] * 4 + ["controller"] * 4


@pytest.mark.parametrize("every,warmup,phases", [
    (1, 0, [1, 2, 3, 4, 5, 6]), (1, 2, [3, 4, 5, 6]), (2, 0, [2, 4, 6]), (2, 3, [4, 6]), (2, 4, [6])])
def test_controller_phases_start_after_the_warmup(every, warmup, phases):
    """The epochs with a controller phase, and the controller's train_step after each epoch (3
    updates per phase): no phase within --uniform_warmup_epochs, every --controller_train_every after."""
    from controller_phase import controller_updates_by, trains_controller
    flags = types.SimpleNamespace(controller_train_every=every, uniform_warmup_epochs=warmup,
                                  controller_train_steps=3, random_search=False)
    assert [e for e in range(1, 7) if trains_controller(flags, e)] == phases
    assert [controller_updates_by(flags, e) for e in range(1, 7)] == [
        3 * sum(p <= e for p in phases) for e in range(1, 7)]


def test_leave_one_out_update_is_the_mean_of_each_advantage_times_its_gradient():
    """--controller_baseline loo on hand-made rewards: the update's gradient is the mean over its
    4 samples of A_i * d(sum -log pi_i), A_i = r_i - the mean of the other three rewards, over
    (--controller_advantage_norm) the running RMS of the A_i, which starts at the first update's
    mean square and moves once per update at decay 0.9^4, plus the L2 term's gradient
    2 * l2_reg * w. The moving average goes on for the logs."""
    l2_reg = 0.01
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(8)
        reward = tf.placeholder(tf.float32, [])
        ctrl = MicroController(num_cells=2, num_aggregate=4, bl_dec=0.9, l2_reg=l2_reg,
                               advantage_norm=True, baseline="loo")
        ctrl.build_trainer(reward, apply_in_train_op=False)  # a cluster's: average_grads
    params = _controller_vars(graph)
    sess = _session(graph)
    square, baseline = 0.0, 0.0
    for rewards in ([0.9, 0.5, 0.7, 0.2], [0.3, 0.35, 0.6, 0.1]):
        r = np.array(rewards)
        loo = np.array([r[i] - np.delete(r, i).mean() for i in range(4)])
        grads = []
        for r_i in rewards:
            grad, bl, _ = sess.run([ctrl.grads, ctrl.baseline, ctrl.train_op], {reward: r_i})
            grads.append(grad)
            baseline = 0.9 * baseline + 0.1 * r_i
            np.testing.assert_allclose(bl, baseline, rtol=1e-5)
        weights = sess.run(params)
        applied, _ = sess.run([ctrl.average_grads, ctrl.apply_op])
        square = np.mean(loo ** 2) if square == 0 else 0.9 ** 4 * square + (1 - 0.9 ** 4) * np.mean(loo ** 2)
        scale = np.sqrt(square) + 1e-6
        for j, (got, w) in enumerate(zip(applied, weights)):
            want = sum(a * g[j] for a, g in zip(loo, grads)) / 4 / scale + 2 * l2_reg * w
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    assert abs(loo.sum()) < 1e-12 and sess.run(ctrl.train_step) == 2
    sess.close()


def test_leave_one_out_redo_after_a_stop_mid_update_is_the_uninterrupted_run(tmp_path):
    """A stop inside a controller phase: the checkpoint holds a partial update of the loo sums
    (reward-weighted gradients, gradients, rewards and their squares), the moving average and
    the advantage's mean square; restored, reset_op drops the partial update, and redoing its
    samples (each cell keyed by its run, reward.controller_keys) ends where the run never
    stopped ends, bit for bit."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(9)
        key = tf.placeholder(tf.int64, [2])
        ctrl = MicroController(num_cells=2, num_aggregate=3, bl_dec=0.9, l2_reg=0.01,
                               advantage_norm=True, baseline="loo", seed=key * 64)
        ctrl.build_trainer(_op_fraction(ctrl.sample_arc, 2) + 1e-4 * ctrl.sample_entropy)
        saver = tf.train.Saver()
        state = tf.global_variables()

    def runs(sess, first, last):
        for run in range(first, last):
            sess.run(ctrl.train_op, {key: reward_lib.controller_keys(run, run // 3, True)[0]})

    sess = _session(graph)
    runs(sess, 0, 4)  # one update and one sample of the next
    assert sess.run([ctrl.train_step, ctrl.accum_count]) == [1, 1]
    path = saver.save(sess, str(tmp_path / "ckpt"))
    runs(sess, 4, 9)
    uninterrupted = sess.run(state)
    sess.close()
    with tf.Session(graph=graph) as sess:
        saver.restore(sess, path)
        sess.run(ctrl.reset_op)
        runs(sess, 3 * int(sess.run(ctrl.train_step)), 9)
        resumed = sess.run(state)
    assert [v.op.name for v in state if "loo/" in v.op.name]  # the test reaches the loo sums
    for v, a, b in zip(state, uninterrupted, resumed):
        np.testing.assert_array_equal(a, b, err_msg=v.op.name)


class _FakePhaseSession(object):
    """Session stand-in for a controller phase: cell_seed 7, train_step 0, and the feed_dict of
    every other run kept."""

    def __init__(self):
        self.feeds = []

    def run(self, fetches, feed_dict=None):
        if fetches == "cell_seed":
            return 7
        if fetches == "train_step":
            return 0
        self.feeds.append(feed_dict)
        return [0.5, 30.0, 0.0035, 1.0, 0.5, 0.4, 0.5, None] if isinstance(fetches, list) else None


@pytest.mark.parametrize("common", [False, True])
def test_common_reward_batch_scores_the_samples_of_an_update_on_the_same_images(common):
    """--controller_common_reward_batch: a controller phase (2 updates of 3 samples) scores the
    samples of one update on the same reward batch, the next update on another; a cluster's
    worker 1 draws the same batch for the same update. Every sample keys its own cell. Without
    the flag every sample has its own batch."""
    import workers
    from controller_phase import ControllerPhase
    valid = np.arange(20 * 4 * 4, dtype=np.uint8).reshape(20, 4, 4, 1)
    data = {"images": {"valid": valid}, "labels": {"valid": np.arange(20, dtype=np.int32)},
            "mean": np.zeros(1, np.float32), "std": np.ones(1, np.float32)}
    g = types.SimpleNamespace(
        controller=types.SimpleNamespace(loss="loss", sample_entropy="entropy", lr="lr", grad_norm="norm",
                                         baseline="bl", reward="reward", train_op="train_op",
                                         train_step="train_step"),
        sampled_valid_acc="acc", eval_images="images", eval_labels="labels", sample_key="key",
        reward_batches=reward_lib.RewardBatches(data, 4, "cell_seed"))
    flags = types.SimpleNamespace(controller_num_aggregate=3, controller_train_steps=2, controller_train_every=1,
                                  uniform_warmup_epochs=0, controller_common_reward_batch=common,
                                  log_every=100, output_dir="out")
    sess = _FakePhaseSession()
    ControllerPhase(sess, g, flags, None, lambda: 0.0).train(epoch=1)
    sync = types.SimpleNamespace(cluster=types.SimpleNamespace(task_index=1))
    workers.controller_sampler(sess, g, flags, sync)(1)  # worker 1's first sample of update 1
    batches = [feed["images"].tobytes() for feed in sess.feeds]
    assert len({tuple(feed["key"]) for feed in sess.feeds}) == 7  # a cell per sample
    if common:
        assert len(set(batches[:3])) == len(set(batches[3:6])) == 1 and batches[0] != batches[3]
        assert batches[6] == batches[3]
    else:
        assert len(set(batches)) == 7
