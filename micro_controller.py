"""ENAS micro-search controller (TF1 graph mode through tensorflow.compat.v1).

An LSTM samples two cell architectures, a normal and a reduce cell. For each of
the B = num_cells nodes it picks two inputs (with attention over the previous
nodes, the "anchors") and two ops (a softmax over num_branches), four integers
per node. It is trained with REINFORCE on a reward its caller defines (reward.py).

Callers must use resource variables:
    tf.disable_v2_behavior(); tf.enable_resource_variables()

API
  MicroController(num_branches=5, num_cells=5, lstm_size=64, lstm_num_layers=1,
                  tanh_constant=None, op_tanh_reduce=1.0, temperature=None,
                  lr=0.0035, l2_reg=0.0, bl_dec=0.99, num_aggregate=10,
                  advantage_norm=False, baseline="ema", seed=None, name="controller")
    .sample_arc          (normal_arc, reduce_arc), two int32 [4*num_cells]
                         tensors; position 4(l-2)+2i is index_i of node l,
                         4(l-2)+2i+1 is op_i; drawn from TensorFlow's random
                         stream, or statelessly from `seed` (int64 [2]
                         tensor, e.g. fed per run) when given
    .sample_entropy      float32 scalar, sum of the entropies of all decisions
    .sample_log_prob     float32 scalar, sum of -log pi of all decisions
    .sample_logits       (normal, reduce), two float32 [4*num_cells, W] tensors:
                         the logits each decision was sampled from, row r
                         valid in its first r//4+2 (index rows) or
                         num_branches (op rows) columns, zero padded to
                         W = max(num_cells + 1, num_branches)
    .seeded_sample_arc(seed)   (normal_arc, reduce_arc) drawn statelessly
                         from seed int64 [2]: the same in every process
    .build_trainer(reward, apply_in_train_op=True)   reward: float32 scalar
                         computed by the caller from sample_arc in the same
                         sess.run. Adds reward, baseline, baseline_var, loss,
                         grads, grad_norm, lr, optimizer, train_step,
                         train_op, accum_count, accumulators, reset_op (and
                         apply_op, average_grads when apply_in_train_op is
                         False).
                         reward and baseline carry the baseline EMA update
                         as a control dependency (as in the original): fetch
                         them together with train_op, read baseline_var
                         for a side-effect-free value.

One run of train_op = one sampled architecture: the baseline is updated, the
sample's terms are added to accumulators, and every num_aggregate runs ONE Adam
step is applied with the update's gradient (train_step counts those). On a
cluster, train_op only accumulates (each worker's samples, into the same
variables on the parameter server) and the chief runs apply_op.

The advantage, by `baseline`:
  "ema"  (the original) reward - the moving average of the rewards (decay bl_dec,
         updated with this reward first); a run adds advantage * d(sum -log pi).
  "loo"  leave-one-out (Kool et al. 2019, "Buy 4 REINFORCE samples, get a
         baseline for free"): sample i's reward minus the mean of its update's
         other rewards. A run adds its gradient of sum -log pi and its reward's
         weight of it, and the update combines them (_loo_gradient); loss and
         grads are then the sample's sum -log pi and its gradient. The moving
         average is still kept, for the logs.
  advantage_norm divides the advantage by its running RMS: per sample ("ema"),
  or per update with the mean square of its advantages ("loo").
"""
import numpy as np
import tensorflow.compat.v1 as tf

import ops
import search_space


def lstm_step(x, prev_c, prev_h, w_lstm):
    """One step of a stacked LSTM without bias, gate order i, f, o, g.

    x: [1, size]; prev_c, prev_h: lists (one per layer) of [1, size];
    w_lstm: list of [2*size, 4*size]. Returns (next_c, next_h), lists.
    """
    next_c, next_h = [], []
    inputs = x
    for c, h, w in zip(prev_c, prev_h, w_lstm):
        ifog = tf.matmul(tf.concat([inputs, h], axis=1), w)
        i, f, o, g = tf.split(ifog, 4, axis=1)
        c_new = tf.sigmoid(i) * tf.tanh(g) + tf.sigmoid(f) * c
        h_new = tf.sigmoid(o) * tf.tanh(c_new)
        next_c.append(c_new)
        next_h.append(h_new)
        inputs = h_new
    return next_c, next_h


def _sample_from(logits, seed=None):
    """Sample one entry of logits [1, n]; seed: None (TensorFlow's random stream) or int64 [2]
    (stateless: the same seed and logits give the same choice in every process).

    Returns (choice int32 [1], -log pi [1], stop_gradient(entropy) [1]).
    """
    if seed is None:
        draw = tf.random.categorical(logits, 1)
    else:
        draw = tf.random.stateless_categorical(logits, 1, seed)
    choice = tf.reshape(tf.cast(draw, tf.int32), [1])
    log_prob = tf.nn.sparse_softmax_cross_entropy_with_logits(
        logits=logits, labels=choice)
    probs = tf.nn.softmax(logits)
    entropy = tf.stop_gradient(-tf.reduce_sum(
        probs * tf.nn.log_softmax(logits), axis=1))
    return choice, log_prob, entropy


class MicroController(object):
    """Samples (normal_arc, reduce_arc) and trains itself with REINFORCE."""

    def __init__(self, num_branches=search_space.NUM_OPS, num_cells=5, lstm_size=64,
                 lstm_num_layers=1, tanh_constant=None, op_tanh_reduce=1.0,
                 temperature=None, lr=0.0035, l2_reg=0.0, bl_dec=0.99,
                 num_aggregate=10, advantage_norm=False, baseline="ema", seed=None,
                 name="controller"):
        self.num_branches = num_branches
        self.num_cells = num_cells
        self.lstm_size = lstm_size
        self.lstm_num_layers = lstm_num_layers
        self.tanh_constant = tanh_constant
        self.op_tanh_reduce = op_tanh_reduce
        self.temperature = temperature
        self.lr_value = lr
        self.l2_reg = l2_reg
        self.bl_dec = bl_dec
        self.num_aggregate = num_aggregate
        self.advantage_norm = advantage_norm
        if baseline not in ("ema", "loo") or (baseline == "loo" and num_aggregate < 2):
            raise ValueError("baseline must be ema, or loo with num_aggregate >= 2: got {} and {}"
                             .format(baseline, num_aggregate))
        self.baseline_kind = baseline
        self.name = name
        self.logits_width = max(num_cells + 1, num_branches)
        self._create_params()
        self._set_sample(seed)

    def seeded_sample_arc(self, seed):
        """(normal_arc, reduce_arc) int32 [4B] drawn from the same controller
        with stateless sampling: seed int64 [2]. The same seed and controller
        weights give the same cells in every process, which is how a
        cluster's workers agree on the cell of a global step without a
        message. The second entries seed[1] + 0 .. 8B - 1 are used."""
        normal, reduce = self._build_both_samplers(seed)
        return normal["arc"], reduce["arc"]

    def _create_params(self):
        """Creates the LSTM, embedding, softmax and attention parameters."""
        size, nb = self.lstm_size, self.num_branches
        init = tf.random_uniform_initializer(-0.1, 0.1)
        with tf.variable_scope(self.name, initializer=init) as scope:
            self._scope = scope
            self.w_lstm = []
            for layer_id in range(self.lstm_num_layers):
                with tf.variable_scope("lstm/layer_{}".format(layer_id)):
                    self.w_lstm.append(
                        tf.get_variable("w", [2 * size, 4 * size]))
            self.g_emb = tf.get_variable("g_emb", [1, size])
            with tf.variable_scope("emb"):
                self.w_emb = tf.get_variable("w", [nb, size])
            with tf.variable_scope("softmax"):
                self.w_soft = tf.get_variable("w", [size, nb])
                # the original's start: ops 0 and 1, the two sep convs, strongly preferred
                b_init = np.array([10.0] * 2 + [0.0] * (nb - 2), np.float32)
                self.b_soft = tf.get_variable(
                    "b", [1, nb], initializer=tf.constant_initializer(b_init))
                self.b_soft_no_learn = tf.constant(
                    [[0.25] * 2 + [-0.25] * (nb - 2)], tf.float32)
            with tf.variable_scope("attention"):
                self.w_attn_1 = tf.get_variable("w_1", [size, size])
                self.w_attn_2 = tf.get_variable("w_2", [size, size])
                self.v_attn = tf.get_variable("v", [size, 1])

    def _build_both_samplers(self, seed=None):
        """Normal sampler from a zero state, reduce sampler from its end state.

        seed: None, or int64 [2] for stateless draws (decision d of the pair
        uses seed + [0, d]). Returns (normal, reduce), _build_sampler dicts.
        """
        with tf.name_scope(self.name + "_sampler"):
            zeros = [tf.zeros([1, self.lstm_size], tf.float32)
                     for _ in range(self.lstm_num_layers)]
            normal = self._build_sampler(zeros, zeros, use_bias=True,
                                         seed=seed)
            reduce_seed = None if seed is None else seed + tf.constant(
                [0, 4 * self.num_cells], tf.int64)
            reduce = self._build_sampler(normal["c"], normal["h"],
                                         use_bias=False, seed=reduce_seed)
        return normal, reduce

    def _set_sample(self, seed):
        """The sampler of the API (sample_arc, sample_entropy, ...); seed: None or int64 [2]."""
        normal, reduce = self._build_both_samplers(seed)
        self.sample_arc = (normal["arc"], reduce["arc"])
        self.sample_entropy = normal["entropy"] + reduce["entropy"]
        self.sample_log_prob = normal["log_prob"] + reduce["log_prob"]
        self.sample_logits = (normal["logits"], reduce["logits"])

    def _scale_logits(self, logits, tanh_scale):
        """Temperature, then tanh_scale * tanh (each only when set)."""
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = tanh_scale * tf.tanh(logits)
        return logits

    def _index_logits(self, layer_id, h, keys):
        """Attention logits [1, layer_id] over the nodes before layer_id.

        h: [1, size]; keys: [layer_id, size], h_j . w_attn_1 of those nodes.
        """
        query = tf.tanh(keys + tf.matmul(h, self.w_attn_2))
        logits = tf.reshape(tf.matmul(query, self.v_attn), [1, layer_id])
        return self._scale_logits(logits, self.tanh_constant)

    def _op_logits(self, h, use_bias):
        """Op logits [1, num_branches] from h [1, size]."""
        logits = tf.matmul(h, self.w_soft) + self.b_soft
        if self.tanh_constant is not None:
            scale = self.tanh_constant / self.op_tanh_reduce
        else:
            scale = None
        logits = self._scale_logits(logits, scale)
        if use_bias:
            logits = logits + self.b_soft_no_learn
        return logits

    def _pad(self, logits):
        """Zero-pads logits [1, n] to [1, logits_width]."""
        pad = self.logits_width - tf.shape(logits)[1]
        return tf.reshape(tf.pad(logits, [[0, 0], [0, pad]]),
                          [1, self.logits_width])

    def _warm_up(self, prev_c, prev_h):
        """Two LSTM steps on g_emb, creating anchors 0 and 1 (zeros).

        Returns (c, h, anchors, anchors_w_1); the TensorArrays hold [1, size].
        """
        n = self.num_cells + 2
        anchors = tf.TensorArray(tf.float32, size=n, clear_after_read=False)
        anchors_w_1 = tf.TensorArray(tf.float32, size=n,
                                     clear_after_read=False)
        for layer_id in range(2):
            prev_c, prev_h = lstm_step(self.g_emb, prev_c, prev_h, self.w_lstm)
            anchors = anchors.write(layer_id, tf.zeros_like(prev_h[-1]))
            anchors_w_1 = anchors_w_1.write(
                layer_id, tf.matmul(prev_h[-1], self.w_attn_1))
        return prev_c, prev_h, anchors, anchors_w_1

    def _node_body(self, use_bias, seed, layer_id, inputs, c, h, anchors,
                   anchors_w_1, arc_seq, all_logits, entropy, log_prob):
        """Samples index_1, index_2, op_1, op_2 of node layer_id (while body);
        seed: None or the cell's int64 [2] base seed (+ [0, position])."""
        start_id = 4 * (layer_id - 2)
        # one gather for both indices: a gather's gradient is a write into anchors_w_1's
        # accumulator, and two in one loop iteration were added in the order they ran, so the
        # controller's gradients changed from run to run (ops.ordered_read)
        keys = tf.reshape(anchors_w_1.gather(tf.range(layer_id)), [layer_id, self.lstm_size])
        for i in range(4):
            c, h = lstm_step(inputs, c, h, self.w_lstm)
            if i < 2:
                logits = self._index_logits(layer_id, h[-1], keys)
            else:
                logits = self._op_logits(h[-1], use_bias)
            pos = start_id + 2 * (i % 2) + i // 2
            choice, curr_log_prob, curr_ent = _sample_from(
                logits, None if seed is None else seed + tf.cast(tf.stack([0, pos]), tf.int64))
            arc_seq = arc_seq.write(pos, choice)
            all_logits = all_logits.write(pos, self._pad(logits))
            log_prob += curr_log_prob
            entropy += curr_ent
            if i < 2:
                inputs = ops.ordered_read(anchors, tf.reduce_sum(choice))
            else:
                inputs = tf.nn.embedding_lookup(self.w_emb, choice)
        c, h = lstm_step(inputs, c, h, self.w_lstm)
        anchors = anchors.write(layer_id, h[-1])
        anchors_w_1 = anchors_w_1.write(layer_id,
                                        tf.matmul(h[-1], self.w_attn_1))
        return (layer_id + 1, self.g_emb, c, h, anchors, anchors_w_1,
                arc_seq, all_logits, entropy, log_prob)

    def _build_sampler(self, prev_c, prev_h, use_bias, seed=None):
        """Samples one cell: 4*num_cells decisions, starting from (c, h).

        prev_c, prev_h: lists of [1, size]; seed: None or int64 [2]
        (stateless, decision at position p uses seed + [0, p]). Returns a dict with "arc" int32
        [4B], "entropy" and "log_prob" float32 scalars, "logits" float32
        [4B, W], and the final state "c", "h" (lists of [1, size]).
        """
        c, h, anchors, anchors_w_1 = self._warm_up(prev_c, prev_h)
        num = 4 * self.num_cells
        loop_vars = [
            tf.constant(2, tf.int32), self.g_emb, c, h, anchors, anchors_w_1,
            tf.TensorArray(tf.int32, size=num),
            tf.TensorArray(tf.float32, size=num),
            tf.zeros([1], tf.float32), tf.zeros([1], tf.float32)]
        out = tf.while_loop(
            lambda layer_id, *args: tf.less(layer_id, self.num_cells + 2),
            lambda *args: self._node_body(use_bias, seed, *args),
            loop_vars, parallel_iterations=1)
        return {"arc": tf.reshape(out[6].stack(), [num]),
                "logits": tf.reshape(out[7].stack(), [num, self.logits_width]),
                "entropy": tf.reduce_sum(out[8]),
                "log_prob": tf.reduce_sum(out[9]),
                "c": out[2], "h": out[3]}

    def _build_baseline(self, reward):
        """The reward and its moving-average baseline, updated as a control dep of reward (with
        either baseline kind: "loo" keeps it for the logs).

        Sets self.reward (scalar), self.baseline_var (variable), self.baseline (its value after
        this run's update, scalar), self.moving_stats (the variables a sample moves outside the
        gradient) and with "ema" self.advantage (scalar: reward - baseline, over its running RMS
        with advantage_norm), with "loo" and advantage_norm that RMS's variable self._loo_square.
        """
        self.baseline_var = tf.get_variable(
            "baseline", [], tf.float32, initializer=tf.zeros_initializer(),
            trainable=False)
        update = self.baseline_var.assign_sub(
            (1.0 - self.bl_dec) * (self.baseline_var - reward))
        with tf.control_dependencies([update]):
            self.reward = tf.identity(reward, name="reward")
            self.baseline = tf.identity(self.baseline_var.read_value(),
                                        name="baseline")
        self.moving_stats = [self.baseline_var]
        if self.baseline_kind == "loo":
            if self.advantage_norm:  # moved by _loo_gradient, once per update
                self._loo_square = self._advantage_square()
            return
        self.advantage = tf.stop_gradient(self.reward) - self.baseline
        if self.advantage_norm:
            square = self._advantage_square()
            self.moving_stats.append(square)
            self.advantage = self.advantage / self._advantage_scale(
                square, tf.square(self.advantage), self.bl_dec)

    def _advantage_square(self):
        """The variable of the advantage's running mean square (float32 [], 0 before the first)."""
        return tf.get_variable(
            "advantage_square", [], tf.float32,
            initializer=tf.zeros_initializer(), trainable=False)

    def _advantage_scale(self, square, advantage_sq, decay):
        """The running root mean square of the advantage (float32 scalar): square (the variable
        of _advantage_square) moved to its EMA with the newest squared advantage advantage_sq
        (float32 []) at `decay`, or set to it the first time; its root, + 1e-6.

        With it the update's size no longer depends on the reward's scale:
        advantages of about 0.01 (a young shared child's accuracies differ by a
        point or two) give Adam gradients below its epsilon (1e-3), so the
        controller barely moves at its learning rate.
        """
        new = tf.where(tf.equal(square, 0.0), advantage_sq,
                       square - (1.0 - decay) * (square - advantage_sq))
        return tf.sqrt(square.assign(new)) + 1e-6

    def _build_loss(self, tf_variables):
        """The run's loss and its gradient: "ema": loss = sum(-log pi) * advantage [+ l2];
        "loo": loss = sum(-log pi), whose gradient the update weighs by the advantage once
        all its rewards are in (_loo_gradient, which adds the l2 term). Sets loss (scalar),
        grads (dense, one per variable) and grad_norm."""
        if self.baseline_kind == "loo":
            loss = self.sample_log_prob
        else:
            loss = self.sample_log_prob * self.advantage
            if self.l2_reg > 0:
                l2 = tf.add_n([tf.reduce_sum(v ** 2) for v in tf_variables])
                loss = loss + self.l2_reg * l2
        self.loss = tf.identity(loss, name="loss")
        grads = tf.gradients(self.loss, tf_variables)
        # Dense: w_emb's gradient is IndexedSlices (embedding_lookup).
        self.grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                      for g, v in zip(grads, tf_variables)]
        for g, v in zip(self.grads, tf_variables):
            g.set_shape(v.shape)  # the accumulators' shapes
        self.grad_norm = tf.global_norm(self.grads)

    def _sample_terms(self, tf_variables):
        """What one run adds to the update's accumulators, [(accumulator name, tensor)]: "ema":
        its gradient per variable; "loo": its reward r times its gradient g, g, r and (with
        advantage_norm) r^2, in float64, so that the difference _loo_gradient takes stays
        exact when the rewards are close."""
        names = [v.op.name[len(self._scope.name) + 1:] for v in tf_variables]
        if self.baseline_kind == "ema":
            return [("accum/" + name, g) for name, g in zip(names, self.grads)]
        r = tf.cast(tf.stop_gradient(self.reward), tf.float64)
        grads = [tf.cast(g, tf.float64) for g in self.grads]
        terms = ([("loo/reward_grad/" + name, r * g) for name, g in zip(names, grads)] +
                 [("loo/grad/" + name, g) for name, g in zip(names, grads)] + [("loo/reward_sum", r)])
        return terms + ([("loo/reward_square_sum", tf.square(r))] if self.advantage_norm else [])

    def _build_accumulate(self, tf_variables, apply_in_train_op):
        """Adds this sample's terms (_sample_terms) to accumulators; applies every N runs
        (apply_in_train_op), else leaves that to apply_op.

        Sets accumulators, accum_count, optimizer, train_step, train_op, applied_stats,
        reset_op (drops a partial update: its sums and its moves of the baseline and the
        advantage scale) and (not apply_in_train_op) apply_op and average_grads.
        """
        zeros = tf.zeros_initializer()
        terms = self._sample_terms(tf_variables)
        self.accumulators = [tf.get_variable(name, t.shape, t.dtype, initializer=zeros, trainable=False)
                             for name, t in terms]
        self.accum_count = tf.get_variable(
            "accum_count", [], tf.int32, initializer=zeros, trainable=False)
        self.train_step = tf.get_variable(
            "train_step", [], tf.int64, initializer=zeros, trainable=False)
        self.optimizer = tf.train.AdamOptimizer(
            self.lr, beta1=0.0, beta2=0.999, epsilon=1e-3, use_locking=True)
        # the moving statistics as the last applied update left them ("baseline_applied", ...):
        # a dropped partial update's samples moved them too, and reset_op takes that back
        self.applied_stats = [tf.get_variable(
            v.op.name.split("/")[-1] + "_applied", [], tf.float32, initializer=zeros,
            trainable=False) for v in self.moving_stats]
        self.reset_op = tf.group(
            tf.variables_initializer(self.accumulators + [self.accum_count]),
            *[v.assign(a) for v, a in zip(self.moving_stats, self.applied_stats)],
            name="reset_accumulators")
        adds = [a.assign_add(t) for a, (_, t) in zip(self.accumulators, terms)]
        with tf.control_dependencies(adds):
            count = self.accum_count.assign_add(1)
        if not apply_in_train_op:
            self.train_op = tf.group(count, name="train_op")
            self.average_grads = self._average_gradient(tf_variables)
            self.apply_op = tf.group(self._apply(self.average_grads, tf_variables),
                                     name="apply_op")
            return
        apply = tf.cond(count >= self.num_aggregate,
                        lambda: self._apply(self._average_gradient(tf_variables), tf_variables),
                        lambda: tf.constant(False))
        self.train_op = tf.group(apply, name="train_op")

    def _average_gradient(self, tf_variables):
        """The update's gradient, one float32 tensor per variable: the mean over its
        num_aggregate samples of advantage * d(sum -log pi) (+ the l2 term's gradient)."""
        if self.baseline_kind == "loo":
            return self._loo_gradient(tf_variables)
        n = float(self.num_aggregate)
        return [a.read_value() / n for a in self.accumulators]

    def _loo_gradient(self, tf_variables):
        """"loo"'s update gradient from the sums of _sample_terms over the update's n samples:
        with A_i = r_i - mean of the others' rewards = n/(n-1) (r_i - mean r),
        mean_i A_i g_i = (sum r_i g_i - mean r * sum g_i) / (n - 1); with advantage_norm over
        the running RMS of the A_i, moved once per update by their mean square at decay
        bl_dec^n (the per-sample decay over n samples); plus 2 * l2_reg * the weights."""
        k, n = len(tf_variables), self.num_aggregate
        sums = [a.read_value() for a in self.accumulators]
        mean_reward = sums[2 * k] / n
        scale = tf.constant(1.0 / (n - 1), tf.float64)
        if self.advantage_norm:
            variance = tf.maximum(sums[2 * k + 1] / n - tf.square(mean_reward), 0.0)
            mean_sq = tf.cast(variance * (n / (n - 1.0)) ** 2, tf.float32)
            rms = self._advantage_scale(self._loo_square, mean_sq, self.bl_dec ** n)
            scale = scale / tf.cast(rms, tf.float64)
        grads = [tf.cast((rg - mean_reward * g) * scale, tf.float32)
                 for rg, g in zip(sums[:k], sums[k:2 * k])]
        if self.l2_reg > 0:
            grads = [g + 2.0 * self.l2_reg * v.read_value() for g, v in zip(grads, tf_variables)]
        return grads

    def _apply(self, grads, tf_variables):
        """One Adam step with grads (the update's, _average_gradient), zeroes the
        accumulators, and only then counts the step in train_step (so a process that sees
        train_step move may add the next update's gradients)."""
        # Root variable scope: slots are named <var>/Adam; absolute name scope:
        # beta1_power/beta2_power land in <name>/, not in <name>_trainer/cond/.
        with tf.variable_scope(tf.VariableScope(None, name=""),
                               auxiliary_name_scope=False), \
                tf.name_scope(self._scope.original_name_scope):
            step = self.optimizer.apply_gradients(zip(grads, tf_variables))
        with tf.control_dependencies([step]):
            resets = [a.assign(tf.zeros_like(a)) for a in self.accumulators]
            resets.append(self.accum_count.assign(0))
            resets += [a.assign(v.read_value()) for v, a in zip(self.moving_stats, self.applied_stats)]
        with tf.control_dependencies(resets):
            counted = self.train_step.assign_add(1)
        with tf.control_dependencies([counted]):
            return tf.constant(True)

    def build_trainer(self, reward, apply_in_train_op=True):
        """Builds the REINFORCE trainer.

        reward: float32 scalar tensor, the reward of sample_arc (computed by the caller in
        the same sess.run: reward.build).
        apply_in_train_op: the num_aggregate-th run of train_op applies the
        update (one process); False: train_op only accumulates and apply_op
        applies, run by a cluster's chief once num_aggregate samples from all
        workers are in (cluster.controller_phase).
        """
        tf_variables = [v for v in tf.trainable_variables()
                        if v.name.startswith(self._scope.name + "/")]
        with tf.variable_scope(self._scope, auxiliary_name_scope=False), \
                tf.name_scope(self.name + "_trainer"):
            self.lr = tf.constant(self.lr_value, tf.float32, name="lr")
            self._build_baseline(tf.convert_to_tensor(reward, tf.float32))
            self._build_loss(tf_variables)
            self._build_accumulate(tf_variables, apply_in_train_op)


def uniform_entropy(num_cells, num_branches=search_space.NUM_OPS):
    """Entropy (nats) of one uniformly drawn (normal, reduce) pair: the maximum of
    sample_entropy. Node n picks 2 inputs among n and 2 ops among num_branches."""
    per_cell = sum(2 * np.log(n) + 2 * np.log(num_branches) for n in range(2, num_cells + 2))
    return float(2 * per_cell)


class UniformSampler(object):
    """Random search with weight sharing (Li & Talwalkar 2019): every decision uniform.

    The same interface as MicroController's sampler, without parameters:
    .sample_arc       (normal_arc, reduce_arc), two int32 [4*num_cells] tensors, drawn afresh
                      at every run (node n: each index uniform in 0..n-1, each op in
                      0..num_branches-1), statelessly from seed (int64 [2]) when given
    .sample_entropy   float32 scalar, uniform_entropy(num_cells, num_branches)
    .seeded_sample_arc(seed)   the same draw, stateless from seed int64 [2]
    """

    def __init__(self, num_cells, num_branches=search_space.NUM_OPS, seed=None, name="uniform_sampler"):
        self.num_cells, self.num_branches, self.name = num_cells, num_branches, name
        self.sample_arc = self.seeded_sample_arc(seed)
        self.sample_entropy = tf.constant(uniform_entropy(num_cells, num_branches), tf.float32)

    def seeded_sample_arc(self, seed):
        """(normal_arc, reduce_arc); seed None (random stream) or int64 [2], of which the second
        entries seed[1] + 0 .. 3 are used."""
        seeds = [None] * 4 if seed is None else [seed + tf.constant([0, i], tf.int64) for i in range(4)]
        with tf.name_scope(self.name):
            return (self._sample_cell(seeds[0], seeds[1]), self._sample_cell(seeds[2], seeds[3]))

    def _sample_cell(self, index_seed, op_seed):
        """int32 [4B]: per node index_1, op_1, index_2, op_2."""
        num_cells, num_branches = self.num_cells, self.num_branches
        num_inputs = np.repeat(np.arange(2, num_cells + 2), 2).astype(np.float32)  # [2B]
        if index_seed is None:
            u = tf.random.uniform([2 * num_cells])
            op = tf.random.uniform([2 * num_cells], 0, num_branches, tf.int32)
        else:
            u = tf.random.stateless_uniform([2 * num_cells], index_seed)
            op = tf.random.stateless_uniform([2 * num_cells], op_seed, 0, num_branches, tf.int32)
        index = tf.cast(tf.floor(u * num_inputs), tf.int32)
        index = tf.minimum(index, num_inputs.astype(np.int32) - 1)  # U may round up to 1
        return tf.reshape(tf.stack([index, op], axis=1), [4 * num_cells])
