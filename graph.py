"""Builds the whole TensorFlow graph of a run: input pipelines, child, controller, eval, saver.

build(flags, data, fixed_arc, sync=None, start_step=0) -> Graph (its docstring lists what it holds);
    Graph.train is a Train, the child's training tensors as named fields.
session_config(flags, search) -> the session's ConfigProto.
"""
import utils  # noqa: F401  (first: TensorFlow's quiet import and its CPU allocator)

import tensorflow.compat.v1 as tf
from tensorflow.core.protobuf import rewriter_config_pb2

import data_utils
import recompute
import reward as reward_lib
from micro_child import MicroChild
from micro_controller import MicroController, UniformSampler

EVAL_BATCH_SIZE = 100


class Train(object):
    """The child's training tensors of a run (build makes it, _build_train):

      loss         float32 []: cross-entropy + 0.4 aux cross-entropy, without L2 (the original's log)
      train_op     one update of the child's weights; on a cluster, the update followed by
                   counting this worker's step (cluster.SyncTraining.count_steps)
      lr, grad_norm   float32 []: the step's learning rate and global gradient norm before clipping
      train_acc    int32 []: correct predictions in the batch (a count)
      batch        int32 []: examples in the batch
      step         int64 []: the global step after train_op
      num_params   int: trainable weights of the child
      cell_step, normal_arc, reduce_arc   a search's training cell: the global step this run
                   read (int64 []) and the (normal, reduce) arcs drawn from it (int32 [4B] each,
                   _cell_of_step); feed the arcs to train a given cell. None in a retraining.
    """
    __slots__ = ("loss", "train_op", "lr", "grad_norm", "train_acc", "batch", "step", "num_params",
                 "cell_step", "normal_arc", "reduce_arc")

    def __init__(self, loss, train_op, lr, grad_norm, train_acc, batch, step, num_params,
                 cell_step=None, normal_arc=None, reduce_arc=None):
        self.loss, self.train_op, self.lr, self.grad_norm = loss, train_op, lr, grad_norm
        self.train_acc, self.batch, self.step, self.num_params = train_acc, batch, step, num_params
        self.cell_step, self.normal_arc, self.reduce_arc = cell_step, normal_arc, reduce_arc

    @property
    def cell(self):
        """(cell_step, normal_arc, reduce_arc) of a search, None in a retraining."""
        return None if self.cell_step is None else (self.cell_step, self.normal_arc, self.reduce_arc)


class Graph(object):
    """What build() made for one run (None where a run has no such part):

      train          the child's training tensors, a Train
      controller     the MicroController with its trainer (search)
      sampler        where the search's cells come from: the controller, or with random_search
                     uniform_sampler (the controller is then built but never trained)
      uniform_sampler   a UniformSampler (search): random search's cells, and the uniform cells
                     the end of a search scores beside the final candidates
      sampled_valid_acc   float32 []: the eval arc's accuracy on a fed reward batch (reward.py)
      reward_batches a reward.RewardBatches (search): the valid images of a key's reward batch
      sample_key     int64 [2] placeholder (search): (kind, index), the key of the cell the
                     sampler draws in a run (reward.sample_key_of); every draw the loop makes
                     feeds its own key, so that a resumed run draws what the run never stopped
                     drew; unfed, a random key
      eval_init      {"valid", "test": op}: restart that split's eval pass (every example once)
      feed(sess, source)  the feed_dict that points the eval graph at "valid" or "test"
                     (reward.feed feeds a reward batch instead)
      eval_correct, eval_count   int32 []: correct predictions and examples in one eval batch
      eval_loss_sum  float32 []: the batch's summed cross-entropy (bench/ranking.py's loss score)
      eval_images, eval_labels, eval_predictions   the eval batch float32 [N, H, W, C], its
                     labels and its predicted class ids int32 [N]
      eval_arc       (normal, reduce) int32 [4B] the eval graph uses; feed them to score a given
                     arc (search; they default to a fresh sample per run)
      global_step, saver, init_op, num_params, num_train_batches
      cell_seed      int64 [], the seed of a search's keyed draws: its cells and reward batches
      epochs_done    int64 [], the last epoch whose end (controller, eval) finished; with
                     set_epochs_done(sess, epoch) a resumed run redoes an interrupted epoch end
    """
    __slots__ = ("train", "controller", "sampler", "sampled_valid_acc", "eval_init", "eval_correct", "eval_loss_sum",
                 "eval_count", "eval_images", "eval_predictions", "eval_arc", "global_step", "saver",
                 "init_op", "num_params", "num_train_batches", "reward_batches", "cell_seed",
                 "epochs_done", "_epochs_done_value", "_set_epochs_done", "_eval_source",
                 "_handles", "_handle_values", "sample_key", "uniform_sampler", "eval_labels")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, None)

    def feed(self, sess, source):
        """{eval source placeholder: the string handle of source's iterator ("valid" or "test")
        in sess}."""
        if self._handle_values is None or self._handle_values[0] is not sess:
            self._handle_values = (sess, sess.run(self._handles))
        return {self._eval_source: self._handle_values[1][source]}

    def set_epochs_done(self, sess, epoch):
        sess.run(self._set_epochs_done, {self._epochs_done_value: epoch})


def session_config(flags, search=True):
    """Soft placement (GPU runs), optional thread counts, and grappler off, except for a
    retraining's --mixed_precision, which is grappler's auto-mixed-precision rewrite: it runs
    the float ops that gain from it in bfloat16 (oneDNN, CPU) or float16 (GPU), casting at the
    edges, while the variables stay float32.

    Grappler (TensorFlow's graph optimizer) is off otherwise: on these graphs it cost start-up
    time and memory for every new fetch signature and made no step faster (ENGINEERING.md),
    and the search child's recomputed layers need it off (recompute.configure).
    """
    config = tf.ConfigProto(allow_soft_placement=True)
    if search:
        recompute.configure(config)
    else:
        _set_precision(config.graph_options.rewrite_options, flags.mixed_precision)
    if flags.num_threads:
        config.intra_op_parallelism_threads = flags.num_threads
        config.inter_op_parallelism_threads = flags.num_threads
    return config


def _set_precision(rewrite, precision):
    """Grappler's rewrite options (a RewriterConfig) for a retraining's --mixed_precision: off for
    "none", else on with its auto-mixed-precision rewrite."""
    rewrite.disable_meta_optimizer = precision == "none"
    if precision == "mixed_bfloat16":
        rewrite.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    elif precision == "mixed_float16":
        rewrite.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON


def _make_child(flags, data, fixed_arc, num_train_batches):
    return MicroChild(
        num_classes=len(data["class_names"]), num_layers=flags.child_num_layers,
        num_cells=flags.child_num_cells, out_filters=flags.child_out_filters,
        keep_prob=flags.child_keep_prob, drop_path_keep_prob=flags.child_drop_path_keep_prob,
        use_aux_heads=flags.child_use_aux_heads, l2_reg=flags.child_l2_reg,
        grad_bound=flags.child_grad_bound, clip_mode=flags.child_clip_mode, lr_max=flags.child_lr_max, lr_min=flags.child_lr_min,
        lr_T_0=flags.child_lr_T_0, lr_T_mul=flags.child_lr_T_mul,
        num_train_batches=num_train_batches, num_epochs=flags.num_epochs,
        data_format=flags.data_format, fixed_arc=fixed_arc, seed=flags.seed,
        shared_init=flags.child_shared_init if fixed_arc is None else None,
        loss_scaling=fixed_arc is not None and flags.mixed_precision == "mixed_float16",
        recompute_mode="none" if fixed_arc is None else flags.child_recompute)


def _make_controller(flags, seed):
    return MicroController(
        seed=seed,
        num_cells=flags.child_num_cells, tanh_constant=flags.controller_tanh_constant,
        op_tanh_reduce=flags.controller_op_tanh_reduce, temperature=flags.controller_temperature,
        lr=flags.controller_lr, l2_reg=flags.controller_l2_reg,
        bl_dec=flags.controller_bl_dec, num_aggregate=flags.controller_num_aggregate,
        advantage_norm=flags.controller_advantage_norm, baseline=flags.controller_baseline)


def _next(dataset):
    return tf.data.make_one_shot_iterator(dataset).get_next()


def _build_eval(g, child, data, arcs, search):
    """One inference graph for valid, test and (search) the reward batches.

    valid and test have their own iterators, and g.feed picks one per run (a string handle), so
    the child's forward graph is built once. reward.feed feeds a reward batch in place of the
    iterator's output.
    """
    # search BN uses each batch's statistics: its eval batches must mix the classes
    iterators = {s: tf.data.make_initializable_iterator(
        data_utils.eval_dataset(data, s, EVAL_BATCH_SIZE, mixed=search)) for s in ("valid", "test")}
    g.eval_init = {s: iterators[s].initializer for s in iterators}
    g._handles = {s: it.string_handle() for s, it in iterators.items()}
    g._eval_source = tf.placeholder(tf.string, [], name="eval_source")
    iterator = tf.data.Iterator.from_string_handle(
        g._eval_source, tf.data.get_output_types(iterators["valid"]),
        tf.data.get_output_shapes(iterators["valid"]))
    g.eval_images, g.eval_labels = iterator.get_next()
    g.eval_correct, g.eval_predictions, g.eval_loss_sum = child.build_eval(
        g.eval_images, g.eval_labels, *arcs)
    g.eval_count = tf.shape(g.eval_labels)[0]


def _cell_of_step(g, global_step, num_cells, warmup_steps):
    """A search's training cell: (normal, reduce) int32 [4B], drawn statelessly from
    (cell_seed, the global step read in this run) with the sampler's weights, which do not change
    during a child epoch; by the uniform sampler in the first warmup_steps steps. Every worker
    that reads step s trains cell(s), with no message.

    A stale worker cannot mix cells: SyncReplicasOptimizer adds a gradient to update A only if
    the worker's local step (the global step it got with its last token) is at least A; the step
    this run read lies between that local step and A, so it is A, and the gradient is cell(A)'s.
    cell_seed (int64 []) is drawn once by the chief and checkpointed: a resumed run goes on with
    the same cells. Returns (the step read int64 [], (normal, reduce))."""
    cell_step = global_step.read_value()
    seed = tf.stack([g.cell_seed.read_value(), cell_step * 8 * num_cells])
    if not warmup_steps:
        return cell_step, g.sampler.seeded_sample_arc(seed)
    in_warmup = cell_step < warmup_steps
    return cell_step, tf.cond(in_warmup, lambda: g.uniform_sampler.seeded_sample_arc(seed),
                              lambda: g.sampler.seeded_sample_arc(seed))


def _build_train(child, images, labels, arcs, cell_step, sync):
    """The child's Train on images [N, H, W, C] and labels [N]: arcs (normal, reduce) int32 [4B]
    and cell_step (the global step they were drawn from) in a search, (None, None) and None in
    a retraining. sync: a cluster's SyncTraining, whose optimizer aggregates the workers'
    gradients and which counts this worker's steps after each update; else None."""
    t = child.build_train(images, labels, *arcs, wrap_optimizer=sync.wrap if sync else None)
    train_op = sync.count_steps(t["train_op"]) if sync else t["train_op"]
    with tf.control_dependencies([train_op]):  # the global step after this update
        step = child.global_step.read_value()
    batch = tf.shape(labels)[0]
    return Train(t["loss"], train_op, t["lr"], t["grad_norm"], t["train_acc"], batch, step,
                 t["num_params"], cell_step, *arcs)


def _build_sampler(g, flags, global_step):
    """A search's controller, sampler, eval arc, cell_seed and sample_key; returns the cell the
    child trains on, (cell_step, (normal, reduce)): the cell of the global step (_cell_of_step),
    in one process as on a cluster, so that a resumed run trains the cells of the run never
    stopped."""
    g.cell_seed = tf.get_variable(  # in every search, so that either kind of run can resume the other
        "cell_seed", [], tf.int64, trainable=False,
        initializer=lambda *_, **__: tf.random.uniform([], 0, 2 ** 31 - 1, tf.int64))
    unfed = tf.stack([tf.constant(reward_lib.UNFED_KIND, tf.int64),
                      tf.random.uniform([], 0, 1 << 40, tf.int64)])
    g.sample_key = tf.placeholder_with_default(unfed, [2], name="sample_key")
    seed = tf.stack([g.cell_seed.read_value() * 16 + g.sample_key[0], g.sample_key[1] * 64])
    g.controller = _make_controller(flags, seed)
    g.uniform_sampler = UniformSampler(flags.child_num_cells, seed=seed)
    g.sampler = g.uniform_sampler if flags.random_search else g.controller
    arcs = g.sampler.sample_arc
    g.eval_arc = tuple(tf.placeholder_with_default(a, a.get_shape()) for a in arcs)
    warmup_steps = flags.uniform_warmup_epochs * g.num_train_batches
    return _cell_of_step(g, global_step, flags.child_num_cells, warmup_steps)


def _build_epochs_done(g):
    g.epochs_done = tf.get_variable("epochs_done", [], tf.int64, tf.zeros_initializer(), trainable=False)
    g._epochs_done_value = tf.placeholder(tf.int64, [])
    g._set_epochs_done = g.epochs_done.assign(g._epochs_done_value)


def build(flags, data, fixed_arc, sync=None, start_step=0):
    """Builds everything (Graph lists it). fixed_arc: (normal, reduce) lists for a retraining,
    None for a search.

    sync: a cluster.SyncTraining for data-parallel workers (call under its cluster's device_scope):
    this worker reads its shard of the training set, and one global step (one update) averages
    sync.cluster.num_aggregate batches, so an epoch has that many times fewer steps. A search's
    workers then all train the cell of the global step, and its controller trainer only
    accumulates (the chief applies, cluster.controller_phase).
    start_step: the global step a resumed run restores; the training batches go on from the
    batch that step would have read (one process; a cluster's shards start afresh).
    """
    g, search = Graph(), fixed_arc is None
    c = sync.cluster if sync else None
    g.num_train_batches = data_utils.num_train_batches(
        len(data["labels"]["train"]), data["n_aug_img"], flags.batch_size * (c.num_aggregate if c else 1))
    child = _make_child(flags, data, fixed_arc, g.num_train_batches)
    images, labels = _next(data_utils.train_dataset(
        data, flags.batch_size, flags.seed, flags.child_cutout_size,
        shard=(c.task_index, c.num_workers) if c else (0, 1),
        crop_pad=flags.child_random_crop_pad, flip=flags.child_random_flip,
        start_batch=0 if c else start_step))
    if search:
        cell_step, train_arcs = _build_sampler(g, flags, child.global_step)
    else:
        cell_step, train_arcs = None, (None, None)
        g.eval_arc = train_arcs
    g.train = _build_train(child, images, labels, train_arcs, cell_step, sync)
    _build_eval(g, child, data, g.eval_arc, search)
    g.global_step = child.global_step
    if search:
        g.controller.build_trainer(reward_lib.build(g, flags, data), apply_in_train_op=sync is None)
    _build_epochs_done(g)
    g.num_params = g.train.num_params
    # One checkpoint is enough to survive a kill: the Saver writes the new one completely, then
    # points `checkpoint` at it, and only then deletes the old one. Relative paths in `checkpoint`:
    # a moved or copied output_dir resumes from its own files, not the old folder's.
    g.saver = tf.train.Saver(max_to_keep=1, save_relative_paths=True)
    g.init_op = tf.global_variables_initializer()
    return g
