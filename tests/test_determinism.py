"""Repeatability at TensorFlow's default thread count (2 on the test machine): one step run again
from the same weights, on the same batch and cell, gives the same gradients, bit for bit.

Gradients summed in the order parallel ops finish change in their last bits from run to run.
These check the two sums that did: a search child node's gradients from the slots that read it
(ops.ordered_read) and the controller's attention keys' gradients (its one gather per node).
test_reliability.py checks whole seeded searches. Without the fix each failed 8 runs in 8 on the
2-core test machine.
"""
import types

import numpy as np
import tensorflow.compat.v1 as tf

import graph as graph_lib
from micro_child import MicroChild
from micro_controller import MicroController

# B = 3, every slot reads node 1 with a sep 3x3: node 1's gradient is six writes into one
# TensorArray accumulator
EVERY_SLOT_READS_NODE_1 = [1, 0] * 6


def _repeated(fetches, repeats):
    """fetches run `repeats` times in the default graph, each time from the variables' first
    values, in a session configured as the scripts' (default thread count)."""
    variables = tf.global_variables()
    config = graph_lib.session_config(types.SimpleNamespace(num_threads=0))
    with tf.Session(config=config) as sess:
        sess.run(tf.global_variables_initializer())
        restore = tf.group(*[v.assign(value) for v, value in zip(variables, sess.run(variables))])
        results = []
        for _ in range(repeats):
            sess.run(restore)
            results.append(sess.run(fetches))
    return results


def _assert_all_equal(results):
    for result in results[1:]:
        for first, again in zip(results[0], result):
            np.testing.assert_array_equal(first, again)


def test_search_child_update_repeats_when_slots_share_an_input():
    """The updated weights of a search child step. He-initialised rows: the aligned start's
    rows are one draw, whose six gradients would be equal and so add up in any order."""
    rng = np.random.RandomState(0)
    images = rng.randn(16, 8, 8, 1).astype(np.float32)
    labels = rng.randint(0, 3, 16).astype(np.int32)
    with tf.Graph().as_default():
        tf.enable_resource_variables()
        tf.set_random_seed(0)
        child = MicroChild(num_classes=3, num_layers=0, num_cells=3, out_filters=4,
                           use_aux_heads=False, shared_init="he", seed=0)
        arc = tf.constant(EVERY_SLOT_READS_NODE_1)
        train_op = child.build_train(tf.constant(images), tf.constant(labels), arc, arc)["train_op"]
        with tf.control_dependencies([train_op]):
            updated = [v.read_value() for v in tf.trainable_variables()]
        _assert_all_equal(_repeated(updated, 4))


def test_controller_gradients_repeat():
    """The REINFORCE gradients of one seeded sample of a 5-node controller."""
    with tf.Graph().as_default():
        tf.enable_resource_variables()
        tf.set_random_seed(0)
        controller = MicroController(num_cells=5, tanh_constant=1.1, op_tanh_reduce=2.5,
                                     seed=tf.constant([1, 2], tf.int64))
        controller.build_trainer(tf.constant(0.5))
        _assert_all_equal(_repeated(controller.grads, 10))
