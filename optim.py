"""The child's optimisation schedule and gradient clipping, as graph ops.

API
  cycle_starts(T_0, T_mul)         epochs at which the cosine cycles start
  cosine_lr_value(epoch, ...)      cosine LR with warm restarts (SGDR), pure Python
  cosine_lr(global_step, ...)      the same schedule as a graph op (stateless: a resumed run gets
                                   the same LR as an uninterrupted one)
  clip_gradients(grads, bound)     clipping to a global norm (or per tensor) that really clips
"""
import math

import numpy as np
import tensorflow.compat.v1 as tf


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
