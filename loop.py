"""The loop of one process or a cluster's chief over one session and one built graph.

  Loop(sess, g, data, flags, search, sync=None).train()
      child steps (ChildSteps); at each epoch end the controller phase and the sampled cells
      (search, controller_phase.py), eval and records (evaluation.py), a checkpoint; after the
      last epoch a search's end (search_end.py). Ctrl-C saves a checkpoint and exits 130.
  ChildSteps       one training step of the child, its log line and TensorBoard scalars
  Progress         the "Progress:" lines (progress_line) and the minutes since the start
A cluster's other workers run workers.py's loops instead.
"""
import math
import sys
import time

import numpy as np

import checkpoints
import cluster as cluster_lib
import controller_phase
import evaluation
import search_end
import utils
from errors import NonFiniteLoss

PROGRESS_EVERY_S = 60  # within a long epoch, a Progress line at least this often
FIRST_ESTIMATE_STEPS = 3  # and one after this many steps of a run, for an early time estimate


def progress_line(step, steps_per_epoch, num_epochs, first_step, elapsed_s, now=None):
    """Where a run is and when it ends, at its pace since first_step (this process's start):
    "Progress: epoch k/N, step s/S, ..." at an epoch's end, "Progress: in epoch k/N, ..." within one.
    The time left includes the epoch ends (eval, controller) seen so far, not a search's final scoring."""
    total = num_epochs * steps_per_epoch
    left = elapsed_s / max(step - first_step, 1) * (total - step)
    now = time.time() if now is None else now
    where = ("epoch {}/{}" if step % steps_per_epoch == 0 else "in epoch {}/{}").format(
        -(-step // steps_per_epoch), num_epochs)
    return ("Progress: {}, step {}/{}, {:.1f} min so far, about {:.1f} min left (ends about {})"
            .format(where, step, total, elapsed_s / 60.0, left / 60.0,
                    time.strftime("%H:%M", time.localtime(now + left))))


class Progress(object):
    """The run's Progress lines: at every epoch end, FIRST_ESTIMATE_STEPS steps into this
    process's run (an early estimate), and within a long epoch every PROGRESS_EVERY_S.
    after_last_epoch: what a search does after its last epoch, in words (named, not estimated:
    it has not run yet), or None."""

    def __init__(self, first_step, steps_per_epoch, num_epochs, after_last_epoch=None):
        self.start = self.last_line = time.time()
        self.first_step, self.steps_per_epoch, self.num_epochs = first_step, steps_per_epoch, num_epochs
        self.after_last_epoch = after_last_epoch

    def mins(self):
        """Minutes since the loop started (the log lines' mins)."""
        return (time.time() - self.start) / 60.0

    def after_step(self, step):
        """Prints the line due within an epoch after `step`, if one is."""
        if step % self.steps_per_epoch and (step - self.first_step == FIRST_ESTIMATE_STEPS
                                            or time.time() - self.last_line > PROGRESS_EVERY_S):
            self.print_line(step)

    def print_line(self, step):
        """Prints progress_line for this step and restarts the clock of the mid-epoch lines."""
        self.last_line = time.time()
        line = progress_line(step, self.steps_per_epoch, self.num_epochs, self.first_step,
                             self.last_line - self.start)
        if self.after_last_epoch:
            line += ", then " + self.after_last_epoch
        print(line, flush=True)


class ChildSteps(object):
    """The child's training steps in the loop: one run of graph.Train.train_op each (a search's on
    the cell of the step), a log line and TensorBoard scalars every log_every steps, and the
    losses of the current epoch (epoch_losses, for progress.tsv). On a cluster's chief each step
    also checks that the workers still make steps (cluster.SyncTraining.check_workers)."""

    def __init__(self, sess, train, flags, records, progress, sync=None):
        """train: a graph.Train; records: an evaluation.Records; progress: a Progress; sync: the
        cluster.SyncTraining of a cluster's chief, else None."""
        self.sess, self.flags, self.records, self.progress, self.sync = sess, flags, records, progress, sync
        self.fetches = [train.loss, train.step, train.lr, train.grad_norm, train.train_acc, train.batch,
                        train.train_op]
        # a cluster's chief also reads the workers' step counts and the cell of the step
        self.cluster_fetches = (sync.worker_steps, train.cell or ()) if sync else ((), ())
        self.epoch_losses = []
        self.run_seconds, self.runs = 0.0, 0

    def seconds_per_epoch(self, steps_per_epoch):
        """Seconds per epoch of this process's child steps alone (no eval, no controller phase:
        the pace of a cell trained alone), or None before its first step."""
        return self.run_seconds / self.runs * steps_per_epoch if self.runs else None

    def run(self, prev_step):
        """One training step after global step prev_step; returns the global step after it (on a
        cluster, other workers' updates may have moved it further). NonFiniteLoss on a NaN or
        Inf loss."""
        start = time.time()
        (loss, step, lr, grad_norm, train_acc, batch, _), (worker_steps, cell) = self.sess.run(
            (self.fetches, self.cluster_fetches), options=self.sync.run_options() if self.sync else None)
        self.run_seconds, self.runs = self.run_seconds + time.time() - start, self.runs + 1
        step = int(step)
        if self.sync:
            self.sync.check_workers(worker_steps)
        self.epoch_losses.append(loss)
        if not math.isfinite(loss):
            raise NonFiniteLoss("child loss is {} at step {}; stopped, the last checkpoint in {} is "
                                "kept".format(loss, step, self.flags.output_dir))
        self.progress.after_step(step)  # an early estimate; then in a long epoch once a minute
        if step // self.flags.log_every > prev_step // self.flags.log_every:
            self.records.scalars(step, {"child/loss": loss, "child/lr": lr, "child/grad_norm": grad_norm,
                                        "child/train_acc": train_acc / float(batch)})
            print("epoch = {:<4d}ch_step = {:<6d}loss = {:<8.6f} lr = {:<8.4f} |g| = {:<8.4f} "
                  "tr_acc = {:<3d}/{:>3d} mins = {:<10.2f}".format(
                      step // self.progress.steps_per_epoch, step, loss, lr, grad_norm, train_acc,
                      batch, self.progress.mins()))
            if cell:
                print(cluster_lib.cell_line(*cell))
        return step


class Loop(object):
    """The original's loop over one session and one built graph (module docstring)."""

    def __init__(self, sess, g, data, flags, search, sync=None):
        """sess holds g's variables (restored or initialised); g: graph.build's Graph; data:
        data_utils.read_data's splits; flags: the parsed flags (enas_flags); search: whether g is
        a search's; sync: the cluster.SyncTraining of a cluster's chief, else None."""
        self.sess, self.g, self.data, self.flags, self.search, self.sync = sess, g, data, flags, search, sync
        self.num_train_batches = g.num_train_batches
        self.total_steps = flags.num_epochs * g.num_train_batches
        self.epochs_done = int(sess.run(g.epochs_done))
        self.records = evaluation.Records(flags.output_dir, search, self.epochs_done)
        self.progress = Progress(self.global_step(), g.num_train_batches, flags.num_epochs,
                                 search_end.after_last_epoch(flags) if search else None)
        self.steps = ChildSteps(sess, g.train, flags, self.records, self.progress, sync)
        self.evaluation = evaluation.Evaluation(sess, g, data, search, self.records,
                                                evaluation.eval_splits(flags))
        self.controller = controller_phase.ControllerPhase(
            sess, g, flags, self.records, self.progress.mins, sync) if search else None

    def global_step(self):
        return int(self.sess.run(self.g.global_step))

    def save(self):
        checkpoints.save(self.sess, self.g.saver, self.flags.output_dir, self.global_step())

    def train(self):
        """Trains from the checkpoint's global step to the last epoch, then ends a search."""
        step = self.progress.first_step
        print("Model has {} params".format(self.g.num_params))
        print("{}: {} epochs of {} child steps ({} steps){}; --num_epochs sets how many".format(
            "Search" if self.search else "Training", self.flags.num_epochs, self.num_train_batches,
            self.total_steps, ", resuming at step {}".format(step) if step else ""))
        try:
            if step > 0 and step // self.num_train_batches > self.epochs_done:
                self.end_of_epoch(step)  # the run stopped between an epoch's last step and its end
            while step < self.total_steps:
                prev_step, step = step, self.steps.run(step)
                if step // self.num_train_batches > prev_step // self.num_train_batches:
                    self.end_of_epoch(step)
        except KeyboardInterrupt:
            self.interrupted()
        if self.search:
            search_end.pick_best_arc(self.sess, self.g, self.data, self.flags, self.records,
                                     self.steps.seconds_per_epoch(self.num_train_batches))
        if self.sync:
            print("Steps per worker: {}".format(" ".join(
                str(n) for n in self.sess.run(self.sync.worker_steps))))

    def interrupted(self):
        """Ctrl-C: saves a checkpoint and exits with status 130."""
        self.save()
        if isinstance(sys.stdout, utils.Logger):
            sys.stdout.end_line()
        print("Interrupted at step {}: checkpoint saved in {}; rerun the same command to "
              "resume.".format(self.global_step(), self.flags.output_dir))
        cluster_lib.exit_now(130)

    def end_of_epoch(self, step):
        """The end of the epoch that ends at `step`: a search's controller phase and sampled
        cells (ControllerPhase.end_of_epoch), eval (eval_every_epochs, and after the last epoch),
        epochs_done, a checkpoint, and on a cluster the workers' release."""
        epoch, flags = step // self.num_train_batches, self.flags
        if self.sync:
            self.sync.pause_watch()
        if self.controller:
            self.controller.end_of_epoch(epoch)
        if epoch % flags.eval_every_epochs == 0 or step >= self.total_steps:
            print("Epoch {}: Eval".format(epoch))
            self.record_epoch(epoch, self.evaluation.evaluate_all(step))
        self.steps.epoch_losses = []
        self.g.set_epochs_done(self.sess, epoch)
        self.save()
        if self.sync:  # a search's workers wait for this before their next epoch
            self.sync.release_epoch(self.sess, epoch)
        self.progress.print_line(step)

    def record_epoch(self, epoch, accuracies):
        """Appends this epoch's figures to progress.tsv: mean child loss, accuracies ({name:
        value}) and the controller's last baseline and entropy (search)."""
        losses = self.steps.epoch_losses
        loss = float(np.mean(losses)) if losses else None
        self.records.add_epoch(epoch, loss=loss, **accuracies,
                               **(self.controller.state if self.controller else {}))
