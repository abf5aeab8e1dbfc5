"""Scoring cells with a search's shared weights: the eval graph over a whole split.

API
  evaluate(sess, g, num_examples, split, feed=None, key_index=None)
      -> (accuracy, mean cross-entropy) on the split
  score_arcs(sess, g, num_valid, arcs, by="accuracy") -> [valid score of each (normal, reduce) arc]
g is a graph.Graph in a session that holds its weights (a run's, or a restored checkpoint's).
"""
import math

import graph as graph_lib
import reward as reward_lib


def evaluate(sess, g, num_examples, split, feed=None, key_index=None):
    """(accuracy, mean cross-entropy) of the eval graph on all num_examples of split ("valid" or "test"), each seen
    exactly once: exactly ceil(N / batch) runs, never one past the end (a failing run would
    still sample a cell). key_index(i) -> the sample key index of batch i, for a search whose
    feed holds no cell (each batch then samples one, keyed so that a resumed run draws the same);
    None when feed holds the cell or there is none (retraining)."""
    sess.run(g.eval_init[split])
    feed = {**g.feed(sess, split), **(feed or {})}
    correct = loss = 0.0
    for i in range(int(math.ceil(num_examples / float(graph_lib.EVAL_BATCH_SIZE)))):
        if key_index is not None:
            feed[g.sample_key] = reward_lib.sample_key_of(reward_lib.EVAL_KIND, key_index(i))
        batch_correct, batch_loss = sess.run([g.eval_correct, g.eval_loss_sum], feed_dict=feed)
        correct, loss = correct + batch_correct, loss + batch_loss
    n = float(max(num_examples, 1))
    return correct / n, loss / n


def score_arcs(sess, g, num_valid, arcs, by="accuracy"):
    """The search's final score of each arc: its accuracy on the whole valid set with the shared
    weights (batch statistics in BN, no dropout), or by="loss": minus its mean cross-entropy
    there (higher is better either way). arcs: [(normal_arc, reduce_arc)] int lists."""
    scores = []
    for normal, reduce in arcs:
        accuracy, loss = evaluate(sess, g, num_valid, "valid", {g.eval_arc[0]: normal, g.eval_arc[1]: reduce})
        scores.append(accuracy if by == "accuracy" else -loss)
    return scores
