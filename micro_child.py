"""The child network of ENAS micro search: a stack of normal and reduction cells.

API
  reduction_layers(num_layers)  ids of the two reduction cells: [n//3, 2*(n//3)+1]
  MicroChild(...)
    .model(images, is_training, normal_arc, reduce_arc) -> (logits [N, classes], aux_logits or None)
    .build_train(images, labels, normal_arc, reduce_arc) -> dict of loss, train_op, lr, grad_norm, ...
    .build_eval(images, labels, normal_arc, reduce_arc)  -> (num_correct, predictions, loss_sum)

Two modes, side by side:
  fixed arc (`fixed_arc` given): the arcs are Python lists; each cell is built once, reduction cells use
    stride-2 ops, drop path on every op but the identity, unused nodes concatenated. Eval uses
    moving BN statistics.
  search (`fixed_arc` None): the arcs are int32 [4B] tensors sampled per step; weights are shared per
    (layer, cell, slot, input index), as rows of one table per layer and kernel; each node reads
    only its sampled input (a TensorArray read) and runs only its sampled op (ops.select); unused
    nodes are concatenated and projected back by a 1x1 conv. Training recomputes
    (recompute.py) every separable conv in the backward pass instead of keeping its activations, and the
    full-resolution layers around their sep convs' kept outputs; it frees each layer's nodes
    once its gradients exist. BN always uses batch statistics (shared weights have no
    per-architecture moving statistics).
    Aligned start (shared_init "aligned", the default): every row of a shared table starts as
    one common draw, and a sep conv's row starts near the identity map (a centred one-tap
    depthwise filter and the identity pointwise matrix, plus ALIGNED_NOISE times he_normal
    noise). So at the start an op computes the same function whichever (slot, input) a cell
    samples, and a sep conv, a pool and the identity all keep a channel's meaning; with
    independent He draws ("he") each sampled cell is a differently scrambled network, and a
    child trained on a new cell every step stayed at chance for hundreds of steps (ENGINEERING.md).
Images enter as NHWC float32 [N, H, W, C]; with data_format NCHW (GPUs) they are transposed once.
"""
import zlib

import numpy as np
import tensorflow.compat.v1 as tf

import ops
import optim
import recompute
import search_space

AUX_LOSS_WEIGHT = 0.4

ALIGNED_NOISE = 0.3  # shared_init "aligned": noise std of a piece, relative to its he_normal std


def he_normal_std(shape):
    """The std tf.initializers.he_normal gives a conv weight of `shape` [k, k, C_in, C_out]:
    sqrt(2 / (k * k * C_in))."""
    return float(np.sqrt(2.0 / np.prod(shape[:-1])))


def _identity_piece(name, shape, kernel):
    """Flat values of one piece of a packed sep conv row for which the sep conv is the identity
    map: a centred one-tap depthwise filter, the identity pointwise matrix, BN scale 1, offset 0."""
    if name == "w_depth":
        value = np.zeros(shape)
        value[kernel // 2, kernel // 2] = 1.0
    elif name == "w_point":
        value = np.eye(shape[2], shape[3])[None, None]
    else:
        value = np.full(shape, float(name == "scale"))
    return value.ravel()


def _rows_init(mean, std, tied, row_scale=None):
    """Initializer of a [R, P] table: mean [P] + a normal truncated at 2 std scaled to std [P]
    (times row_scale [R] per row, if given); tied: one draw for all R rows, else one per row."""
    def init(shape, dtype=tf.float32, partition_info=None):
        draw = tf.random.truncated_normal([1 if tied else shape[0], shape[1]], dtype=dtype)
        if tied:
            draw = tf.tile(draw, [shape[0], 1])
        draw *= tf.constant(std / ops.TRUNCATED_NORMAL_STD, dtype)
        if row_scale is not None:
            draw *= tf.constant(np.asarray(row_scale)[:, None], dtype)
        return draw + tf.constant(mean, dtype)
    return init


def count_params(variables):
    """Number of scalars in `variables`."""
    return int(sum(np.prod(v.get_shape().as_list()) for v in variables))


def reduction_layers(num_layers):
    """Layer ids of the reduction cells among num_layers + 2 cells (the paper's two reductions)."""
    pool_distance = num_layers // 3
    return [pool_distance, 2 * pool_distance + 1]


class MicroChild(object):
    def __init__(self, num_classes, num_layers=6, num_cells=5, out_filters=20, keep_prob=1.0,
                 drop_path_keep_prob=None, use_aux_heads=True, l2_reg=1e-4, grad_bound=5.0,
                 clip_mode="global", shared_init="aligned",
                 lr_max=0.05, lr_min=0.0005, lr_T_0=10, lr_T_mul=2, num_train_batches=1,
                 num_epochs=1, data_format="NHWC", fixed_arc=None, loss_scaling=False,
                 seed=None, recompute_mode="none", name="child"):
        """fixed_arc: None for search, else (normal_arc, reduce_arc) lists of 4 * num_cells ints.

        clip_mode: how grad_bound clips (optim.clip_gradients): "global" norm or per-tensor "norm".
        shared_init: how the search's shared tables start, "aligned", "he" or "authors"
        (_enas_conv_table).
        loss_scaling: dynamic loss scaling, which float16 training needs (gradients that would
        underflow in float16 are scaled up; a step whose gradients overflow is skipped).
        seed: the run's seed (--seed), which with the step and the op seeds drop path's masks;
        None draws one. Given, the search child also adds each node's gradients in a fixed order
        (ops.ordered_read), so that the run repeats: about a quarter slower a search step.
        recompute_mode (fixed arc; enas_flags.RECOMPUTE): what a training step recomputes in the
        backward pass instead of keeping: "none"; "sep_convs", the activations inside every
        separable conv op (its input and output are kept); "all", besides, those of every
        ReLU -> 1x1 conv -> BN and factorized reduction of the cells. The gradients are the same.
        """
        self.num_classes = num_classes
        self.num_layers = num_layers
        self.num_cells = num_cells
        self.out_filters = out_filters
        self.keep_prob = keep_prob
        self.drop_path_keep_prob = drop_path_keep_prob
        self.use_aux_heads = use_aux_heads
        self.l2_reg = l2_reg
        self.grad_bound = grad_bound
        self.clip_mode = clip_mode
        self.shared_init = shared_init
        self.lr_args = dict(lr_max=lr_max, lr_min=lr_min, T_0=lr_T_0, T_mul=lr_T_mul)
        self.num_train_batches = num_train_batches
        self.num_train_steps = num_epochs * num_train_batches
        self.data_format = data_format
        self.fixed_arc = fixed_arc
        self.search = fixed_arc is None
        self.loss_scaling = loss_scaling
        self.name = name
        self.pool_layers = reduction_layers(num_layers)
        self.aux_head_layer = self.pool_layers[-1] + 1
        self.global_step = tf.train.get_or_create_global_step()
        self.seed = int(np.random.randint(2 ** 31)) if seed is None else seed
        self.read_node = ops.ordered_read if seed is not None else lambda nodes, i: nodes.read(i)
        self.recompute_mode = recompute_mode

    # ----------------------------------------------------------------------------------- network
    def model(self, images, is_training, normal_arc=None, reduce_arc=None):
        """images: float32 [N, H, W, C] -> (logits [N, num_classes], aux_logits [N, num_classes] or None).

        is_training: a training graph (dropout, drop path, the aux head, whose loss only training
        uses) or an inference one; with a fixed arc it also sets BN's statistics (_bn_mode).
        """
        if normal_arc is None:
            normal_arc, reduce_arc = self.fixed_arc
        if self.data_format == "NCHW":
            images = tf.transpose(images, [0, 3, 1, 2])
        with tf.variable_scope(self.name, reuse=tf.AUTO_REUSE):
            x = self._stem(images, is_training)
            layers, out_filters, aux_logits = [x, x], self.out_filters, None
            for layer_id in range(self.num_layers + 2):
                reduction = layer_id in self.pool_layers
                out_filters *= 2 if reduction else 1
                arc = reduce_arc if reduction else normal_arc
                with tf.variable_scope("layer_{}".format(layer_id)):
                    x = self._layer(layer_id, layers, arc, out_filters, reduction, is_training)
                layers = [layers[-1], x]
                if self.use_aux_heads and is_training and layer_id == self.aux_head_layer:
                    aux_logits = self._aux_head(x)
            return self._head(x, is_training), aux_logits

    def _bn_mode(self, is_training):
        """What every BN of the model does (ops.batch_norm): the search child always uses the
        batch's statistics (BN_BATCH); a fixed arc's BN trains its moving averages in training
        graphs (BN_TRAIN) and uses them in inference graphs (BN_MOVING)."""
        if self.search:
            return ops.BN_BATCH
        return ops.BN_TRAIN if is_training else ops.BN_MOVING

    def _stem(self, images, is_training):
        """3x3 conv to 3 * out_filters channels, then BN (no ReLU: every op starts with its own)."""
        with tf.variable_scope("stem_conv"):
            in_c = images.get_shape().as_list()[3 if self.data_format == "NHWC" else 1]
            w = ops.create_weight("w", [3, 3, in_c, 3 * self.out_filters])
            x = tf.nn.conv2d(images, w, [1, 1, 1, 1], "SAME", data_format=self.data_format)
            return ops.batch_norm(x, self._bn_mode(is_training), self.data_format)

    def _layer(self, layer_id, layers, arc, out_filters, reduction, is_training):
        if not self.search:
            stride = 2 if reduction else 1

            return self._fixed_layer(layer_id, layers, arc, out_filters, stride, is_training)

        def search_layer(layers):
            if reduction:
                x = ops.factorized_reduction(layers[-1], out_filters, ops.BN_BATCH,
                                             self.data_format)
                layers = [layers[-1], x]
            return self._enas_layer(layers, arc, out_filters)
        if not is_training:
            return recompute.released(search_layer, layers)
        # The layers before the first reduction cell hold the largest activations (full
        # resolution): the backward pass recomputes them, all but their sep convs, whose outputs
        # it reuses (each sep conv recomputes itself). The other layers keep their activations.
        # Every layer frees its nodes once its gradients exist (recompute.own).
        if layer_id < self.pool_layers[0]:
            return recompute.recomputed(search_layer, layers, reuse_inner_outputs=True)
        return recompute.recomputed(search_layer, layers, keep_activations=True)

    def _calibrate(self, layers, out_filters, is_training):
        """Brings the two cell inputs to the same H, W and to out_filters channels."""
        df, bn_mode = self.data_format, self._bn_mode(is_training)
        x, y = layers
        with tf.variable_scope("calibrate"):
            if ops.height(x, df) != ops.height(y, df):
                assert (ops.height(x, df) + 1) // 2 == ops.height(y, df)

                # the search recomputes it: relu(x) is a full node of the previous resolution
                def reduce_x(x):
                    return ops.factorized_reduction(tf.nn.relu(x), out_filters, bn_mode, df)
                with tf.variable_scope("pool_x"):
                    x = (recompute.recomputed(reduce_x, x) if self.search else
                         self._kept_or_recomputed(reduce_x, x, bn_mode, ("all",)))
            elif ops.channels(x, df) != out_filters:
                x = self._relu_conv_bn(x, out_filters, bn_mode, "pool_x")
            if ops.channels(y, df) != out_filters:
                y = self._relu_conv_bn(y, out_filters, bn_mode, "pool_y")
        return [x, y]

    def _kept_or_recomputed(self, fn, x, bn_mode, modes):
        """fn(x), recomputed in the backward pass instead of kept (recompute.recomputed) in a
        fixed-arc training graph (bn_mode BN_TRAIN) whose recompute_mode is one of modes."""
        if bn_mode == ops.BN_TRAIN and self.recompute_mode in modes:
            return recompute.recomputed(fn, x)
        return fn(x)

    def _relu_conv_bn(self, x, out_filters, bn_mode, name):
        """ops.relu_conv_bn, recomputed with recompute_mode "all" (_kept_or_recomputed); the search
        keeps TensorFlow's kernels (ops.pointwise_conv's tf_kernels)."""
        def relu_conv_bn(x):
            return ops.relu_conv_bn(x, out_filters, bn_mode, self.data_format, name, self.search)
        return self._kept_or_recomputed(relu_conv_bn, x, bn_mode, ("all",))

    def _factorized_reduction(self, x, out_filters, bn_mode):
        """ops.factorized_reduction of a fixed cell, recomputed with recompute_mode "all"."""
        def reduce(x):
            return ops.factorized_reduction(x, out_filters, bn_mode, self.data_format)
        return self._kept_or_recomputed(reduce, x, bn_mode, ("all",))

    def _aux_head(self, x):
        """Auxiliary classifier after the second reduction; trained (README "Where we differ", 2).

        ReLU -> 5x5 avg pool stride 3 (VALID, or SAME when the map is smaller than 5) -> 1x1 conv 128
        -> BN -> ReLU -> hw x hw conv 768 -> BN -> ReLU -> global pool -> linear.
        """
        df = self.data_format
        with tf.variable_scope("aux_head"):
            x = tf.nn.relu(x)
            padding = "VALID" if ops.height(x, df) >= 5 else "SAME"
            ksize = [1, 5, 5, 1] if df == "NHWC" else [1, 1, 5, 5]
            x = tf.nn.avg_pool2d(x, ksize, ops.strides(3, df), padding, data_format=df)
            for scope, filters, k in [("proj", 128, 1), ("avg_pool", 768, ops.height(x, df))]:
                with tf.variable_scope(scope):
                    w = ops.create_weight("w", [k, k, ops.channels(x, df), filters])
                    x = tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME", data_format=df)
                    x = tf.nn.relu(ops.batch_norm(x, self._bn_mode(True), df))
            return ops.fully_connected(ops.global_avg_pool(x, df), self.num_classes)

    def _head(self, x, is_training):
        """ReLU -> global average pool -> dropout (training only) -> linear to num_classes."""
        x = ops.global_avg_pool(tf.nn.relu(x), self.data_format)
        if is_training and self.keep_prob < 1.0:  # seeded like drop path (_drop_path_seed)
            x = tf.nn.experimental.stateless_dropout(x, 1.0 - self.keep_prob, self._drop_path_seed())
        return ops.fully_connected(x, self.num_classes)

    # ------------------------------------------------------------------------- fixed-arc cell
    def _fixed_layer(self, layer_id, prev_layers, arc, out_filters, stride, is_training):
        """A cell with a known arc. Returns [N, H/stride, W/stride, n_unused * out_filters]."""
        bn_mode = self._bn_mode(is_training)
        layers = self._calibrate(prev_layers, out_filters, is_training)
        layers[1] = self._relu_conv_bn(layers[1], out_filters, bn_mode, "layer_base")
        used = [0] * (self.num_cells + 2)
        for cell_id in range(self.num_cells):
            x_id, x_op, y_id, y_op = arc[4 * cell_id: 4 * cell_id + 4]
            with tf.variable_scope("cell_{}".format(cell_id)):
                x = self._fixed_op(layers[x_id], x_op, stride if x_id < 2 else 1, out_filters,
                                   layer_id, is_training, "x_conv")
                y = self._fixed_op(layers[y_id], y_op, stride if y_id < 2 else 1, out_filters,
                                   layer_id, is_training, "y_conv")
            used[x_id] += 1
            used[y_id] += 1
            layers.append(x + y)
        return self._fixed_combine(layers, used, out_filters, bn_mode)

    def _fixed_op(self, x, op_id, stride, out_filters, layer_id, is_training, name):
        """One of the five ops on one input; drop path on all but the identity while training."""
        df, bn_mode = self.data_format, self._bn_mode(is_training)
        with tf.variable_scope(name):
            if op_id in search_space.SEP_CONV_KERNEL:
                kernel = search_space.SEP_CONV_KERNEL[op_id]
                x = self._fixed_conv(x, kernel, out_filters, stride, bn_mode)
            elif op_id in (search_space.AVG_POOL, search_space.MAX_POOL):
                x = ops.pool(x, op_id, stride, df)
            elif stride > 1:
                x = self._factorized_reduction(x, out_filters, bn_mode)
            if ops.channels(x, df) != out_filters:
                x = self._relu_conv_bn(x, out_filters, bn_mode, "proj")
            drop_path = is_training and self.drop_path_keep_prob is not None
            if op_id != search_space.IDENTITY and drop_path:
                x = ops.drop_path(x, self._drop_path_keep_prob(layer_id), self._drop_path_seed())
        return x

    def _fixed_conv(self, x, kernel, out_filters, stride, bn_mode):
        """Two stacked ReLU -> separable conv (kernel x kernel) -> BN blocks; stride on the first.
        Their activations are recomputed in the backward pass unless recompute_mode is "none"."""
        df = self.data_format

        def blocks(x):
            for conv_id in range(2):
                with tf.variable_scope("sep_conv_{}".format(conv_id)):
                    inp_c = ops.channels(x, df)
                    w_depth = ops.create_weight("w_depth", [kernel, kernel, inp_c, 1])
                    w_point = ops.create_weight("w_point", [1, 1, inp_c, out_filters])
                    x = ops.separable_conv(tf.nn.relu(x), w_depth, w_point,
                                           stride if conv_id == 0 else 1, df)
                    x = ops.batch_norm(x, bn_mode, df)
            return x
        return self._kept_or_recomputed(blocks, x, bn_mode, ("sep_convs", "all"))

    def _drop_path_keep_prob(self, layer_id):
        """keep = 1 - min(1, step / total_steps) * (1 - keep_layer): deeper cells and later steps drop more."""
        layer_ratio = float(layer_id + 1) / (self.num_layers + 2)
        keep_layer = 1.0 - layer_ratio * (1.0 - self.drop_path_keep_prob)
        step = tf.cast(self.global_step + 1, tf.float32)
        step_ratio = tf.minimum(1.0, step / float(max(1, self.num_train_steps)))
        return 1.0 - step_ratio * (1.0 - keep_layer)

    def _drop_path_seed(self):
        """int64 [2]: (the run's seed, a number of this drop path or dropout op's variable scope),
        and the step being trained: the masks of a step are the same in a resumed run, and in a
        recomputed cell's backward copy, which is built in the same variable scope."""
        op_number = zlib.crc32(tf.get_variable_scope().name.encode()) % 1000003
        op_seed = self.seed * 1000003 + op_number
        return tf.stack([tf.constant(op_seed, tf.int64), tf.cast(self.global_step, tf.int64)])

    def _fixed_combine(self, layers, used, out_filters, bn_mode):
        """Concatenates every unused node (inputs included) on channels; a 2x larger one is reduced first."""
        df = self.data_format
        out_hw = min(ops.height(layer, df) for layer, u in zip(layers, used) if u == 0)
        out = []
        with tf.variable_scope("final_combine"):
            for i, layer in enumerate(layers):
                if used[i] > 0:
                    continue
                if ops.height(layer, df) > out_hw:
                    with tf.variable_scope("calibrate_{}".format(i)):
                        layer = self._factorized_reduction(layer, out_filters, bn_mode)
                out.append(layer)
        return tf.concat(out, axis=3 if df == "NHWC" else 1)

    # ------------------------------------------------------------------- shared-weight cell
    def _enas_layer(self, prev_layers, arc, out_filters):
        """A cell whose arc is an int32 [4B] tensor: y [N, H, W, out_filters].

        The nodes live in a TensorArray: a node reads its sampled input with one dynamic read,
        and the gradient flows back only to the nodes that were read (a tf.switch_case or
        tf.gather over the candidate inputs would make a dense zero gradient for every candidate
        not picked); with a seed, ops.ordered_read adds a node's gradients from its readers in
        a fixed order, so that a seeded search repeats. Build it inside recompute.recomputed or
        recompute.released, which close the TensorArray (recompute.own).
        """
        layers = self._calibrate(prev_layers, out_filters, True)
        input_ids = arc[0::2]  # each slot's sampled input, in slot order
        slot_rows = self._enas_conv_rows(input_ids, out_filters)
        nodes = tf.TensorArray(tf.float32, size=self.num_cells + 2, clear_after_read=False,
                               element_shape=layers[0].get_shape())
        nodes = nodes.write(0, layers[0]).write(1, layers[1])
        entries = tf.unstack(arc, 4 * self.num_cells)  # one op, not a slice per entry
        for cell_id in range(self.num_cells):
            x_id, x_op, y_id, y_op = entries[4 * cell_id: 4 * cell_id + 4]
            with tf.variable_scope("cell_{}".format(cell_id)):
                x = self._enas_node_input(self.read_node(nodes, x_id), x_op,
                                          slot_rows[2 * cell_id])
                y = self._enas_node_input(self.read_node(nodes, y_id), y_op,
                                          slot_rows[2 * cell_id + 1])
            nodes = nodes.write(cell_id + 2, x + y)
        used = tf.reduce_sum(tf.one_hot(input_ids, self.num_cells + 2, dtype=tf.int32), 0)
        return self._enas_combine(recompute.own(nodes), used, out_filters)

    def _enas_node_input(self, x, op_id, rows):
        """Runs only the sampled op (op_id) on the sampled input x; ops.select executes just one op.

        rows: {3: row, 5: row}, this slot's and input's packed sep conv weights (_conv_layout).
        """
        df = self.data_format
        branches = {  # by op id: ops.select takes them in that order
            search_space.SEP_3X3: (lambda x, row: self._enas_conv(x, row, 3), rows[3]),
            search_space.SEP_5X5: (lambda x, row: self._enas_conv(x, row, 5), rows[5]),
            search_space.AVG_POOL: (lambda x, _: ops.pool(x, search_space.AVG_POOL, 1, df), None),
            search_space.MAX_POOL: (lambda x, _: ops.pool(x, search_space.MAX_POOL, 1, df), None),
            search_space.IDENTITY: (lambda x, _: tf.identity(x), None),
        }
        branches = [branches[op] for op in range(search_space.NUM_OPS)]
        out = ops.select(op_id, x, branches)
        out.set_shape(x.get_shape())
        return out

    def _slot_sizes(self):
        """Rows per slot, in slot order (cell 0 x, cell 0 y, cell 1 x, ...): one per possible input."""
        return [cell_id + 2 for cell_id in range(self.num_cells) for _ in range(2)]

    @staticmethod
    def _conv_layout(kernel, c):
        """The pieces of one packed sep conv row on c channels: (name, shape, size) per stacked
        block."""
        shapes = [("w_depth", [kernel, kernel, c, 1]), ("w_point", [1, 1, c, c]),
                  ("scale", [c]), ("offset", [c])] * 2
        return [(name, shape, int(np.prod(shape))) for name, shape in shapes]

    def _enas_conv_table(self, kernel, c):
        """The layer's weight table of one sep conv op: [R, P], one row per (slot, possible input).

        R = sum of _slot_sizes(); a row packs both stacked blocks' w_depth, w_point, BN scale and
        offset (_conv_layout), so that one Switch routes them. BN scale starts at 1, offset 0.
        shared_init "he": each row an independent he_normal draw per piece, as the fixed child's
        convs of those shapes get. "authors": independent rows whose weights have std
        sqrt(2 / rows of the slot), what the authors' he_normal gives each slot's own
        [possible inputs, k*k*C] table (fan-in = its row count). "aligned": every row starts as one
        common draw near the identity map (module docstring).
        """
        layout = self._conv_layout(kernel, c)
        is_weight = np.concatenate([np.full(n, float(name.startswith("w_"))) for name, _, n in layout])
        he_std = np.concatenate([np.full(n, he_normal_std(shape) if name.startswith("w_") else 0.0)
                                 for name, shape, n in layout])
        mean = np.concatenate([np.full(n, float(name == "scale")) for name, _, n in layout])
        if self.shared_init == "aligned":
            mean = np.concatenate([_identity_piece(name, shape, kernel) for name, shape, _ in layout])
            init = _rows_init(mean, ALIGNED_NOISE * he_std, tied=True)
        elif self.shared_init == "authors":
            rows = [size for size in self._slot_sizes() for _ in range(size)]
            init = _rows_init(mean, is_weight, tied=False, row_scale=np.sqrt(2.0 / np.array(rows)))
        else:
            init = _rows_init(mean, he_std, tied=False)
        return ops.create_weight("conv_{0}x{0}".format(kernel), [sum(self._slot_sizes()), mean.size],
                                 init)

    def _enas_conv_rows(self, input_ids, c):
        """Every slot's packed sep conv row for its sampled input, with one gather per table.

        input_ids: int32 [2B], each slot's sampled input index, in slot order.
        Returns a list over slots of {kernel: row [P]}. Gathered before ops.select routes them:
        the rows are small, and their gradients are IndexedSlices that should not pass through
        Switch/Merge.
        """
        sizes = self._slot_sizes()
        first_row = tf.constant([sum(sizes[:s]) for s in range(len(sizes))], tf.int32)
        row_ids = first_row + input_ids
        per_kernel = {k: tf.unstack(tf.gather(self._enas_conv_table(k, c), row_ids)) for k in (3, 5)}
        return [{k: rows[slot] for k, rows in per_kernel.items()} for slot in range(len(sizes))]

    def _enas_conv(self, x, row, kernel):
        """Two ReLU -> separable conv -> BN (batch statistics) blocks with one packed weight row.

        x [N, H, W, C] -> [N, H, W, C]. Its six activations are recomputed in the backward pass
        instead of kept (recompute.recomputed): kept, they were most of a search step's memory.
        """
        df = self.data_format
        layout = self._conv_layout(kernel, ops.channels(x, df))

        def blocks(x, row):
            pieces = tf.split(row, ops.shared_constant([size for _, _, size in layout], tf.int32))
            w = [p if len(shape) == 1 else tf.reshape(p, ops.shared_constant(shape, tf.int32))
                 for p, (_, shape, _) in zip(pieces, layout)]
            for w_depth, w_point, scale, offset in (w[:4], w[4:]):
                x = ops.separable_conv(tf.nn.relu(x), w_depth, w_point, 1, df, tf_kernels=True)
                x = ops.batch_stats_norm(x, scale, offset, df)
            return x
        return recompute.recomputed(blocks, x, row)

    def _enas_combine(self, nodes, used, out_filters):
        """Concatenates the nodes no other node used and projects them back to out_filters (1x1 conv).

        nodes: TensorArray of num_cells + 2 tensors [N, H, W, C]; used: int32 [num_cells + 2] counts.
        """
        df = self.data_format
        indices = tf.reshape(tf.cast(tf.where(tf.equal(used, 0)), tf.int32), [-1])
        num_outs = tf.size(indices)
        out = nodes.gather(indices)
        shape = tf.shape(out)
        if df == "NHWC":
            out = tf.transpose(out, [1, 2, 3, 0, 4])
            out = tf.reshape(out, [shape[1], shape[2], shape[3], num_outs * out_filters])
        else:
            out = tf.transpose(out, [1, 0, 2, 3, 4])
            out = tf.reshape(out, [shape[1], num_outs * out_filters, shape[3], shape[4]])
        with tf.variable_scope("final_conv"):
            # a row is node i's block of a 1x1 conv: he_normal with that block's fan_in; the
            # authors' he_normal on the [B + 2, F * F] table: fan_in = B + 2 (ops.create_weight)
            std = np.full(out_filters * out_filters, he_normal_std([1, 1, out_filters, out_filters]))
            init = (None if self.shared_init == "authors" else
                    _rows_init(np.zeros_like(std), std, tied=self.shared_init == "aligned"))
            w = ops.create_weight("w", [self.num_cells + 2, out_filters * out_filters], init)
            w = tf.reshape(tf.gather(w, indices, axis=0), [1, 1, num_outs * out_filters, out_filters])
            out = tf.nn.conv2d(tf.nn.relu(out), w, [1, 1, 1, 1], "SAME", data_format=df)
            out = ops.batch_norm(out, ops.BN_BATCH, df)
        out.set_shape(nodes.element_shape)
        return out

    # -------------------------------------------------------------------------------- training
    def build_train(self, images, labels, normal_arc=None, reduce_arc=None, wrap_optimizer=None):
        """Loss, Nesterov-momentum train op with cosine LR, L2 and global-norm clipping.

        images [N, H, W, C] float32, labels [N] int32. Returns a dict with loss (CE + 0.4 aux CE,
        without L2, as logged by the original), train_op, lr, grad_norm, train_acc (correct count).
        wrap_optimizer: optimizer -> optimizer, e.g. cluster.SyncTraining.wrap for several workers.
        """
        logits, aux_logits = self.model(images, True, normal_arc, reduce_arc)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=labels))
        if aux_logits is not None:
            loss += AUX_LOSS_WEIGHT * tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(logits=aux_logits, labels=labels))
        variables = [v for v in tf.trainable_variables() if v.name.startswith(self.name + "/")]
        l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
        lr = optim.cosine_lr(self.global_step, self.num_train_batches, **self.lr_args)
        optimizer = tf.train.MomentumOptimizer(lr, 0.9, use_nesterov=True)
        if self.loss_scaling:
            optimizer = tf.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, "dynamic")
        if wrap_optimizer is not None:
            optimizer = wrap_optimizer(optimizer)
        if self.loss_scaling:  # scales the loss, unscales the gradients
            grads = [g for g, _ in optimizer.compute_gradients(loss + self.l2_reg * l2, variables)]
        else:
            grads = tf.gradients(loss + self.l2_reg * l2, variables)
        grads, grad_norm = optim.clip_gradients(grads, self.grad_bound, self.clip_mode)
        train_op = optimizer.apply_gradients(zip(grads, variables), global_step=self.global_step)
        predictions = tf.argmax(logits, axis=1, output_type=tf.int32)
        train_acc = tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.int32))
        return dict(loss=loss, train_op=train_op, lr=lr, grad_norm=grad_norm, train_acc=train_acc,
                    num_params=count_params(variables))

    def build_eval(self, images, labels, normal_arc=None, reduce_arc=None):
        """Inference graph (no dropout / drop path). Returns (num_correct int32, predictions [N]
        int32, summed cross-entropy float32 [])."""
        logits, _ = self.model(images, False, normal_arc, reduce_arc)
        predictions = tf.argmax(logits, axis=1, output_type=tf.int32)
        loss_sum = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=tf.cast(logits, tf.float32)))
        return tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.int32)), predictions, loss_sum
