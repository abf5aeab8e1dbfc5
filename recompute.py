"""Recomputation: a sub-graph's activations recomputed in the backward pass instead of kept.

The contract, in plain words:
  recomputed(fn, *inputs) builds y = fn(*inputs) so that a training step keeps only fn's inputs
  and y. When y's gradient exists, the backward pass builds and runs fn once more on the same
  inputs and differentiates that copy: memory holds one call's activations at a time, for about
  one more forward pass of compute. fn may create and read (resource) variables: the copy reads
  them again, in fn's variable scope. fn must be deterministic: the copy must compute what the
  first call did (stateless dropout with a fixed seed is fine). A state update inside fn (a BN's
  moving averages) is built only when in_backward_copy() is False, so it runs once per step.
  keep_activations=True recomputes nothing (the gradients are the first call's); it still frees
  fn's TensorArrays once its gradients exist.
  reuse_inner_outputs=True: the copy does not rerun the recomputed calls inside fn (a search
  layer's sep convs); it takes their first outputs, which stay in memory until then, and only
  their own gradients recompute them.

  own(array) hands a TensorArray made inside fn to the call being built, which closes it when
  nothing needs it any more: once y exists (a recomputed first call; released) or once its
  gradients do. A TensorArray otherwise holds its elements until the step ends. fn returns y
  only.
  released(fn, *inputs) builds fn(*inputs) for inference: its owned TensorArrays are closed once
  y exists.

The replay is by call order: the copy's k-th recomputed call inside fn gets the first build's
k-th output. Each recorded output keeps its call's site (fn, variable scope, the lines that
called it, its inputs' dtypes and shapes); a copy whose calls differ from the recorded ones, in
order or number, raises ReplayError naming the call expected, instead of reusing the wrong output.

What it requires of the session, where a call owns TensorArrays: grappler off. Its constant
folding and dependency optimizer moved a TensorArray's close before writes the close must
follow, and a read after the close fails. configure(config) sets that in a tf.ConfigProto;
check_config(config, graph) raises RuntimeError when a graph with owned TensorArrays would run
with grappler on. Calls without them (the fixed-arc child's) run under any config.
"""
import os
import sys
import weakref

import tensorflow.compat.v1 as tf

_users = weakref.WeakSet()  # the graphs whose recomputed or released calls own TensorArrays


class ReplayError(RuntimeError):
    """A backward copy did not make the recomputed calls its first build made, in that order."""


def configure(config):
    """Sets in config (a tf.ConfigProto) what a session running recomputed or released calls
    needs: grappler off (rewrite_options.disable_meta_optimizer). Returns config."""
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


def check_config(config, graph):
    """Raises RuntimeError when graph's recomputed or released calls own TensorArrays and config
    (a tf.ConfigProto) leaves grappler on (configure)."""
    if graph in _users and not config.graph_options.rewrite_options.disable_meta_optimizer:
        raise RuntimeError("this graph has recomputed calls (recompute.py): its session needs "
                           "grappler off (graph_options.rewrite_options.disable_meta_optimizer, "
                           "recompute.configure)")


class _Call(object):
    """A recomputed (or released) call being built: the TensorArrays its fn owns, and, with
    reuse_inner_outputs, the recomputed calls inside it: (site, output) pairs recorded in the
    first build (recording), replayed in that order by the backward copy (replay, a list)."""

    def __init__(self, recording=False, replay=None, copy=False):
        self.arrays, self.recorded = [], []
        self.recording, self.replay, self.replayed = recording, replay, 0
        self.copy = copy  # a backward copy: builds no state updates (in_backward_copy)

    def next_output(self, site):
        """The recorded output of the next call, which must be made at `site` (_site)."""
        if self.replayed == len(self.replay):
            raise ReplayError("recompute: the backward copy made a recomputed call the first build "
                              "did not make: {} (after the {} recorded ones)".format(site, self.replayed))
        expected, y = self.replay[self.replayed]
        if site != expected:
            raise ReplayError("recompute: the backward copy's recomputed call {} was expected to be "
                              "{}, got {}".format(self.replayed, expected, site))
        self.replayed += 1
        return y

    def check_replayed(self):
        """Raises ReplayError if the copy made fewer recomputed calls than the first build."""
        if self.replayed < len(self.replay):
            raise ReplayError("recompute: the backward copy made {} of the {} recomputed calls of the "
                              "first build; the next expected was {}".format(
                                  self.replayed, len(self.replay), self.replay[self.replayed][0]))


_calls = []  # the calls being built, innermost last


def in_backward_copy():
    """True while a backward copy of a recomputed call is being built. Code that changes state
    (a BN's moving averages) builds its update only when this is False: the first build made it."""
    return any(call.copy for call in _calls)


def own(array):
    """Registers a TensorArray (its last version, after every write) with the innermost call
    being built, which closes it (module docstring); returns array."""
    if not _calls:
        raise RuntimeError("recompute.own outside recompute.recomputed or recompute.released")
    _calls[-1].arrays.append(array)
    _users.add(tf.get_default_graph())
    return array


def _build(fn, inputs, args, call):
    """fn(*inputs restructured from the flat list args) with `call` as the innermost call."""
    _calls.append(call)
    try:
        return fn(*tf.nest.pack_sequence_as(inputs, args))
    finally:
        _calls.pop()


def released(fn, *inputs):
    """fn(*inputs), once the TensorArrays fn owns are closed (an inference graph)."""
    call = _Call()
    y = _build(fn, inputs, tf.nest.flatten(inputs), call)
    return _after_closing([y], call.arrays, [y])[0]


def recomputed(fn, *inputs, keep_activations=False, reuse_inner_outputs=False):
    """fn(*inputs) -> y, a tensor, with fn's activations recomputed in the backward pass (module
    docstring). inputs: nests of tensors."""
    flat = tf.nest.flatten(inputs)
    var_scope = tf.get_variable_scope()
    # The copy is built outside the outer "gradients" name scope, so that its TensorArray
    # gradients all find one accumulator (_grad_source).
    name_scope = tf.get_default_graph().get_name_scope()
    copy_scope = (name_scope + "/" if name_scope else "") + "recomputed/"
    outer = _calls[-1] if _calls else None
    replaying = outer is not None and outer.replay is not None
    site = _site(fn, flat) if replaying or (outer is not None and outer.recording) else None
    first = _Call(recording=reuse_inner_outputs)

    @tf.custom_gradient
    def forward(*flat_args):
        if replaying:  # this call's first output
            assert not keep_activations, "a reused output has no activations to differentiate"
            y = tf.identity(outer.next_output(site))
        else:
            y = _build(fn, inputs, list(flat_args), first)

        def grad(dy, variables=()):
            with tf.name_scope(copy_scope), tf.variable_scope(var_scope, reuse=True,
                                                                  auxiliary_name_scope=False):
                if keep_activations:
                    args, y_again, arrays = list(flat_args), y, first.arrays
                else:
                    with tf.control_dependencies([dy]):
                        args = [tf.identity(t) for t in flat_args]
                    copy = _Call(replay=first.recorded if reuse_inner_outputs else None, copy=True)
                    y_again = _build(fn, inputs, args, copy)
                    if reuse_inner_outputs:
                        copy.check_replayed()
                    arrays = copy.arrays
                return _partial_gradients(y_again, dy, args, list(variables), arrays)
        if keep_activations:
            return y, grad
        return _after_closing([y], first.arrays, [y])[0], grad
    y = forward(*flat)
    if outer is not None and outer.recording:
        outer.recorded.append((site, y))
    return y


def _site(fn, flat_inputs):
    """Where and on what a recomputed call inside another is made, as one line: fn's name, the
    variable scope, the lines from the enclosing call's fn down to this call (innermost first),
    and the inputs' dtypes and static shapes. The first build and the backward copy of the
    enclosing call make each inner call at the same site."""
    lines, frame = [], sys._getframe(2)  # the caller of recomputed
    while frame is not None and frame.f_code is not _build.__code__:
        lines.append("{}:{}".format(os.path.basename(frame.f_code.co_filename), frame.f_lineno))
        frame = frame.f_back
    inputs = ", ".join("{} {}".format(t.dtype.name, t.shape) if hasattr(t, "dtype") else repr(t)
                       for t in flat_inputs)
    return "{} in variable scope {!r} from {} on ({})".format(
        getattr(fn, "__qualname__", repr(fn)), tf.get_variable_scope().name, " < ".join(lines), inputs)


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
