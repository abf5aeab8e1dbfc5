"""Evaluation and records of the loop: accuracy on whole splits, and what the loop writes into
output_dir besides checkpoints (TensorBoard scalars, progress.tsv with its plot, arcs.tsv).

  Records(output_dir, search, epochs_done)   the loop's files; a resumed run first drops their
                                             rows of epochs after epochs_done
    .scalars(step, values)       {tag: number} as TensorBoard scalars at step
    .add_arcs(rows)              arcs.tsv rows (epoch, source, arc, valid_acc, n_images)
    .add_epoch(epoch, **values)  an epoch's figures into progress.tsv, then the plot redrawn
  Evaluation(sess, g, data, search, records, splits)
    .evaluate(split) -> accuracy on the whole split
    .evaluate_all(step) -> {"<split>_acc": accuracy}, printed and written as scalars
  eval_splits(flags)             the splits a run evaluates
"""
import os

import tensorflow.compat.v1 as tf

import progress
import records as records_lib
import scoring


def eval_splits(flags):
    """("valid", "test"), or ("test",) for a retraining on train + valid (--train_with_valid)."""
    return ("test",) if getattr(flags, "train_with_valid", False) else ("valid", "test")


class Records(object):
    """The files the loop appends to in output_dir: an events file of TensorBoard scalars (no
    graph), progress.tsv and its plot, and in a search arcs.tsv (arcs_path)."""

    def __init__(self, output_dir, search, epochs_done):
        self.output_dir, self.search = output_dir, search
        self.arcs_path = os.path.join(output_dir, "arcs.tsv")
        self.writer = tf.summary.FileWriter(output_dir)
        if search:
            records_lib.keep_rows_up_to(self.arcs_path, epochs_done)
        self.progress = progress.ProgressLog(output_dir, keep_up_to=epochs_done)

    def scalars(self, step, values):
        """Writes {tag: number} as TensorBoard scalars at `step` (no extra graph ops or runs)."""
        self.writer.add_summary(tf.Summary(value=[
            tf.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()]), step)

    def flush(self):
        self.writer.flush()

    def add_arcs(self, rows):
        records_lib.append_rows(self.arcs_path, rows)

    def add_epoch(self, epoch, **values):
        """Appends an epoch's {name: value} to progress.tsv and redraws the progress plot."""
        self.progress.add(epoch, **values)
        self.plot()

    def plot(self):
        """Draws search_progress.png (search) or train_progress.png from the records so far."""
        if self.search:
            progress.plot_search_progress(self.arcs_path, self.progress,
                                          os.path.join(self.output_dir, "search_progress.png"))
        else:
            progress.plot_train_progress(self.progress, os.path.join(self.output_dir, "train_progress.png"))


class Evaluation(object):
    """Accuracy of the child on whole splits (scoring.evaluate) in the loop's session. In a search
    each eval batch samples its cell with its own sample key, a function of the split, the epoch
    and the batch only, so that a resumed run scores with the same cells."""

    def __init__(self, sess, g, data, search, records, splits):
        """g: graph.build's Graph; data: data_utils.read_data's splits; records: a Records;
        splits: the splits evaluate_all scores (eval_splits)."""
        self.sess, self.g, self.data, self.search, self.records = sess, g, data, search, records
        self.splits = splits

    def evaluate(self, split):
        """Accuracy on every example of split ("valid" or "test"), each seen once."""
        key_index = None
        if self.search:
            epoch = int(self.sess.run(self.g.global_step)) // self.g.num_train_batches
            which = ("valid", "test").index(split)
            key_index = lambda i: (epoch * 2 + which) * (1 << 20) + i  # noqa: E731
        return scoring.evaluate(self.sess, self.g, len(self.data["labels"][split]), split, None,
                                key_index)[0]

    def evaluate_all(self, step):
        """Evaluates every split of self.splits at global step `step`: prints each accuracy,
        writes it as a TensorBoard scalar; returns {"valid_acc": ..., "test_acc": ...}."""
        print("Eval at {}".format(step))
        accuracies = {}
        for split in self.splits:
            accuracy = self.evaluate(split)
            print("{}_accuracy: {:<6.4f}".format(split, accuracy))
            self.records.scalars(step, {"eval/{}_acc".format(split): accuracy})
            accuracies[split + "_acc"] = accuracy
        self.records.flush()
        return accuracies
