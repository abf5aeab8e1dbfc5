"""Shared helpers for both entry scripts.

API
  import_tensorflow_quietly()      run on import: TensorFlow's C++ start-up lines never reach stderr
  Logger                           tee of stdout into a file (append mode)
  cosine_lr_value(epoch, ...)      cosine LR with warm restarts, pure Python
  cosine_lr(global_step, ...)      the same schedule as a graph op
  clip_gradients(grads, bound)     global-norm clipping that really clips
  count_params(variables)
"""
import contextlib
import math
import os
import sys

from errors import writing

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of logs
# CPU tensors from TensorFlow's best-fit-with-coalescing allocator instead of malloc: glibc kept
# the freed activations of a step in fragmented heaps (README, engineering notes). Read once, when
# the CPU device is made: here, before TensorFlow is imported.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


@contextlib.contextmanager
def _stderr_closed():
    """File descriptor 2 goes to /dev/null inside the block (C++ writes it directly)."""
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


def import_tensorflow_quietly():
    """Imports TensorFlow with stderr closed: its C++ start-up lines (oneDNN, CUDA stubs) ignore
    TF_CPP_MIN_LOG_LEVEL and would bury a one-line error about bad input. Importing utils first
    (as the scripts do) is enough."""
    with _stderr_closed():
        import tensorflow.compat.v1  # noqa: F401


import_tensorflow_quietly()


def probe_devices_quietly():
    """On a machine without an NVIDIA driver, looks for GPUs once with stderr closed, so that the
    CUDA platform's expected "failed call to cuInit" error line is not printed by the first
    session; where a driver exists, GPU start-up errors are real and stay visible. Call it once
    per process before the first session (it starts TensorFlow's device threads, so not at
    import: a process that forks after importing would hang). It uses device_lib, not tf.config,
    whose eager context names devices /job:localhost and so breaks a cluster's placement."""
    if os.path.exists("/dev/nvidiactl"):
        return
    with _stderr_closed():
        from tensorflow.python.client import device_lib
        device_lib.list_local_devices()

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

class Logger(object):
    """Writes everything printed to the terminal and appends it to `path`."""

    def __init__(self, path):
        self.terminal = sys.stdout
        self.path = path
        with writing(path):
            self.log = open(path, "a")

    def write(self, message):
        self.terminal.write(message)
        self.terminal.flush()
        with writing(self.path):
            self.log.write(message)
            self.log.flush()

    def flush(self):
        self.terminal.flush()
        with writing(self.path):
            self.log.flush()


def cycle_starts(T_0, T_mul, max_epochs=10 ** 6):
    """Epochs at which the cosine cycles start: 0, T_0, T_0 + T_0*T_mul, ..."""
    starts, length = [0], T_0
    while starts[-1] < max_epochs:
        starts.append(starts[-1] + length)
        length *= T_mul
    return starts


def cosine_lr_value(epoch, lr_max, lr_min, T_0, T_mul):
    """LR of cosine annealing with warm restarts (SGDR) at an integer epoch.

    Unlike the original (README "Where we differ", 3) the first epoch of every cycle gets exactly lr_max.
    """
    starts = cycle_starts(T_0, T_mul, epoch + 1)
    k = max(i for i, s in enumerate(starts) if s <= epoch)
    T_i = T_0 * T_mul ** k
    T_cur = epoch - starts[k]
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * T_cur / T_i))


def cosine_lr(global_step, num_train_batches, lr_max, lr_min, T_0, T_mul):
    """Graph version of cosine_lr_value, with epoch = global_step // num_train_batches.

    Stateless (no last_reset / T_i variables), so a resumed run gets the same LR as an uninterrupted one.
    """
    epoch = tf.cast(global_step // num_train_batches, tf.int64)
    starts = np.array(cycle_starts(T_0, T_mul), dtype=np.int64)
    k = tf.searchsorted(starts, tf.reshape(epoch, [1]), side="right")[0] - 1
    lengths = np.array([T_0 * T_mul ** i for i in range(len(starts))], dtype=np.float64)
    T_i = tf.gather(tf.constant(lengths), k)
    T_cur = tf.cast(epoch - tf.gather(tf.constant(starts), k), tf.float64)
    lr = lr_min + 0.5 * (lr_max - lr_min) * (1.0 + tf.cos(math.pi * T_cur / T_i))
    return tf.cast(lr, tf.float32)


def clip_gradients(grads, bound, mode="global"):
    """Clips gradients that the original computed and then discarded.

    mode "global": the whole list to global norm bound; "norm": each tensor to norm bound (what
    the authors' clip_mode="norm" asked for). bound None or <= 0: no clipping.
    Returns (clipped_grads, grad_norm); grad_norm is the global norm before clipping, as logged.
    """
    grad_norm = tf.linalg.global_norm(grads)
    if bound is None or bound <= 0:
        return grads, grad_norm
    if mode == "norm":
        return [None if g is None else tf.clip_by_norm(g, bound) for g in grads], grad_norm
    clipped, _ = tf.clip_by_global_norm(grads, bound, use_norm=grad_norm)
    return clipped, grad_norm


def count_params(variables):
    """Number of scalars in `variables`."""
    return int(sum(np.prod(v.get_shape().as_list()) for v in variables))
