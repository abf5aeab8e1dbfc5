"""The training loop shared by both entry scripts: set-up, child epochs, controller phases, eval.

run(mode) with mode "search" (main_controller_child_trainer.py) or "final" (main_child_trainer.py):
  1. parse and check flags, read the data, prepare output_dir (resume, or a safe reset);
  2. build the graph (graph.py) and restore the latest checkpoint if there is one;
  3. loop over child steps; at each epoch end: controller phase (search), eval, checkpoint.
Bad input raises errors.UserError, printed as one line with exit status 2.
"""
import contextlib
import itertools
import math
import os
import sys
import time

import utils  # first: it imports TensorFlow quietly

import numpy as np
from absl import flags as absl_flags
import tensorflow.compat.v1 as tf

import checkpoints
import cluster as cluster_lib
import data_utils
import enas_flags
import export
import graph as graph_lib
import progress
import recompute
import records
import scoring
import search_space
import visualize
from enas_flags import FLAGS
from errors import UserError, WriteFailed

PROGRESS_EVERY_S = 60  # within a long epoch, a Progress line at least this often
FIRST_ESTIMATE_STEPS = 3  # and one after this many steps of a run, for an early time estimate


class NonFiniteLoss(Exception):
    """A NaN or Inf loss: the run stops, the last good checkpoint is kept."""


def main(mode):
    """Entry point of both scripts: exit 0 on success, 2 on bad input, 1 on a non-finite loss,
    a lost cluster or a file it cannot write."""
    tf.get_logger().setLevel("ERROR")
    tf.disable_v2_behavior()
    tf.enable_resource_variables()  # ref variables race with in-place momentum updates (NaN from step 2)
    enas_flags.define_flags(mode)
    try:
        FLAGS(sys.argv)
        utils.probe_devices_quietly()
        run(mode)
    except (UserError, absl_flags.Error) as e:
        exit_with("error: {}".format(e), 2)
    except (NonFiniteLoss, cluster_lib.ClusterError) as e:
        exit_with("error: {}".format(e), 1)
    except WriteFailed as e:
        exit_with("error: {}; the run stopped and its last checkpoint in {} is kept: free space, "
                  "then rerun the same command to resume".format(e, FLAGS.output_dir), 1)
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.AbortedError) as e:
        exit_with("error: {}".format(cluster_lib.describe(e)), 1)  # only clusters time out or get lost
    except KeyboardInterrupt:
        exit_with("Interrupted", 130)


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


def exit_with(message, status):
    """Prints message on stderr and exits with status (see cluster_lib.exit_now)."""
    print(message, file=sys.stderr)
    cluster_lib.exit_now(status)


def run(mode):
    """Checks everything the user gave, then trains (see the module docstring)."""
    search = mode == "search"
    enas_flags.check_flags(FLAGS, mode)
    fixed_arc = None if search else search_space.parse_arc(FLAGS.child_fixed_arc, FLAGS.child_num_cells)
    cluster = cluster_lib.from_flags(FLAGS)
    if cluster and cluster.job == "ps":
        return cluster_lib.serve(cluster)
    chief = cluster is None or cluster.is_chief
    data = read_data()
    if chief:  # only the chief of a cluster writes to output_dir
        run_flags = records.shaping_flags(FLAGS, mode, fixed_arc, len(data["class_names"]))
        records.prepare_output_dir(FLAGS.output_dir, FLAGS.reset_output_dir, run_flags)
        if not search and FLAGS.export_only:
            return export_model(data, fixed_arc)
        sys.stdout = utils.Logger(os.path.join(FLAGS.output_dir, "stdout"))
        enas_flags.print_user_flags()
    build_and_train(data, search, fixed_arc, cluster)
    if chief and not search:
        export_model(data, fixed_arc)


def read_data():
    """The three splits of the data flags (data_utils.read_data)."""
    return data_utils.read_data(FLAGS.train_data_dir, FLAGS.val_data_dir, FLAGS.test_data_dir,
                                FLAGS.channel, FLAGS.img_size, FLAGS.n_aug_img, FLAGS.skip_bad_images,
                                FLAGS.batch_size, train_with_valid())


def train_with_valid():
    """A retraining on train + valid (--train_with_valid): no validation pass."""
    return getattr(FLAGS, "train_with_valid", False)


def build_and_train(data, search, fixed_arc, cluster):
    """Builds the graph and trains: the whole loop in one process or a cluster's chief, else a
    cluster worker's own loop."""
    if FLAGS.seed is not None:  # each worker its own random stream (dropout, controller samples)
        tf.set_random_seed(FLAGS.seed + (cluster.task_index if cluster else 0))
    sync = cluster_lib.SyncTraining(cluster) if cluster else None
    start_step = checkpoints.step_of(checkpoints.latest(FLAGS.output_dir)) if cluster is None else 0
    with cluster.device_scope() if cluster else contextlib.nullcontext():
        g = graph_lib.build(FLAGS, data, fixed_arc, sync, start_step)
    sess = open_session(g, sync)
    if cluster is None or cluster.is_chief:
        Loop(sess, g, data, search, sync).train()
    else:
        step = (search_worker_loop if search else worker_loop)(sess, g, sync)
        print("worker {}: done, {} steps of its own, global step {}".format(
            cluster.task_index, sync.own_steps, step), flush=True)
    sync.close(sess) if sync else sess.close()  # not on errors: see cluster_lib.exit_now


def worker_loop(sess, g, sync):
    """A retraining's non-chief worker: child steps to the end; returns the global step."""
    return cluster_lib.worker_steps(sess, g.train, int(sess.run(g.global_step)),
                                    FLAGS.num_epochs * g.num_train_batches, FLAGS.log_every, sync)


def worker_sample_key(sync, k):
    """The sample key of a non-chief worker's k-th controller sample: apart from the chief's
    (indices below 2^40) and the other workers'. A cluster's samples depend on which worker
    draws them, so they repeat with the seed but are not exact across a resume."""
    return graph_lib.sample_key_of(graph_lib.CONTROLLER_KIND, (sync.cluster.task_index << 40) + k)


def search_worker_loop(sess, g, sync):
    """A search's non-chief worker, in step with the chief (cluster.py): each child epoch, then at
    its end its share of the controller phase, then a wait until the chief has evaluated and
    saved (sync.epoch_released). The chief alone scores the final cells. Returns the global step."""
    steps_per_epoch, total = g.num_train_batches, FLAGS.num_epochs * g.num_train_batches
    step = int(sess.run(g.global_step))
    samples = itertools.count()  # this worker's controller samples in this process
    while True:
        epoch = step // steps_per_epoch
        if epoch > int(sess.run(g.epochs_done)):  # an epoch end the chief has not finished
            if trains_controller(epoch):
                cluster_lib.controller_phase(sess, g.controller, sync, controller_updates_by(epoch),
                                             lambda: sess.run(g.controller.train_op, g.feed(
                                                 sess, "reward", worker_sample_key(sync, next(samples)))))
            if step >= total:
                return step
            cluster_lib.wait_for(sess, sync.epoch_released, lambda done: done >= epoch,
                                 "the chief's end of epoch {}".format(epoch), sync.wait_secs(sess))
        if step >= total:
            return step
        step = cluster_lib.worker_steps(sess, g.train, step, (epoch + 1) * steps_per_epoch,
                                        FLAGS.log_every, sync)


def trains_controller(epoch):
    """Whether a search's end of `epoch` has a controller phase."""
    return epoch % FLAGS.controller_train_every == 0 and not FLAGS.random_search


def controller_updates_by(epoch):
    """The controller's train_step after the controller phase of `epoch` (a resumed phase does
    only the updates it still lacks)."""
    return epoch // FLAGS.controller_train_every * FLAGS.controller_train_steps


def export_model(data, fixed_arc):
    print("SavedModel written to {}".format(
        export.export_from_checkpoint(FLAGS, data, fixed_arc, FLAGS.output_dir)))


def open_session(g, sync):
    """A session with the latest checkpoint in output_dir restored, or freshly initialised; on a
    cluster's worker, one that waits for the chief to do that."""
    config = graph_lib.session_config(FLAGS, search=g.controller is not None)
    recompute.check_config(config, tf.get_default_graph())
    if sync:
        return sync.open_session(config, lambda sess: restore_or_init(sess, g))
    sess = tf.Session(config=config)
    restore_or_init(sess, g)
    return sess


def restore_or_init(sess, g):
    """Restores the checkpoint in output_dir if there is one (checkpoints.latest), else
    initialises every variable."""
    latest = checkpoints.latest(FLAGS.output_dir)
    if latest:
        checkpoints.restore(sess, g.saver, latest, FLAGS.output_dir)
        print("Resumed from {} at step {}".format(latest, int(sess.run(g.global_step))))
        if g.controller:  # a stop inside a controller phase: its redo starts with whole updates
            sess.run(g.controller.reset_op)
    else:
        sess.run(g.init_op)


def report_final_scores(final_accs, uniform_accs, best_acc):
    """Prints what the search's answer is worth: the shared-weight scores of the final candidates
    against as many uniformly drawn cells, and the chosen cell's rank among all of them."""
    for name, accs in (("final candidates", final_accs), ("uniform cells", uniform_accs)):
        print("{:<17} valid_acc mean {:.4f}  std {:.4f}  best {:.4f}  (n = {})".format(
            name + ":", np.mean(accs), np.std(accs), np.max(accs), len(accs)))
    rank = 1 + sum(acc > best_acc for acc in uniform_accs)
    print("The chosen cell ranks {} of {} among the uniform cells and itself. These are scores with "
          "the shared weights, not the accuracy a cell reaches when retrained alone: they show whether "
          "the controller learned to prefer cells the shared weights score higher, not that the "
          "chosen cell retrains better. bench/ranking.py measures how well these scores predict "
          "retrained accuracy on your data.".format(rank, len(uniform_accs) + 1))


class Loop(object):
    """The original's loop over one session and one built graph."""

    def __init__(self, sess, g, data, search, sync=None):
        """sync: the cluster.SyncTraining of a cluster's chief, else None."""
        self.sess, self.g, self.data, self.search, self.sync = sess, g, data, search, sync
        self.start = time.time()
        self.num_train_batches = g.num_train_batches
        self.total_steps = FLAGS.num_epochs * self.num_train_batches
        self.arcs_path = os.path.join(FLAGS.output_dir, "arcs.tsv")
        self.writer = tf.summary.FileWriter(FLAGS.output_dir)  # TensorBoard scalars, no graph
        self.epoch_losses, self.controller_state = [], {}
        t = g.train
        self.train_fetches = [t.loss, t.step, t.lr, t.grad_norm, t.train_acc, t.batch, t.train_op]
        # a cluster's chief also watches the workers' step counts and logs the cell of the step
        self.cluster_fetches = (sync.worker_steps, t.cell or ()) if sync else ((), ())

    def summarize(self, step, values):
        """Writes {tag: number} as TensorBoard scalars at `step` (no extra graph ops or runs)."""
        self.writer.add_summary(tf.Summary(value=[
            tf.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()]), step)

    def mins(self):
        return (time.time() - self.start) / 60.0

    def train(self):
        step = self.global_step()
        epochs_done = int(self.sess.run(self.g.epochs_done))
        if self.search:
            records.keep_rows_up_to(self.arcs_path, epochs_done)
        self.progress = progress.ProgressLog(FLAGS.output_dir, keep_up_to=epochs_done)
        print("Model has {} params".format(self.g.num_params))
        self.first_step, self.last_progress = step, time.time()
        print("{}: {} epochs of {} child steps ({} steps){}; --num_epochs sets how many".format(
            "Search" if self.search else "Training", FLAGS.num_epochs, self.num_train_batches,
            self.total_steps, ", resuming at step {}".format(step) if step else ""))
        try:
            if step > 0 and step // self.num_train_batches > epochs_done:
                self.end_of_epoch(step)  # the run stopped between an epoch's last step and its end
            while step < self.total_steps:
                prev_step, step = step, self.child_step(step)
                if step // self.num_train_batches > prev_step // self.num_train_batches:
                    self.end_of_epoch(step)
        except KeyboardInterrupt:
            self.save()
            if isinstance(sys.stdout, utils.Logger):
                sys.stdout.end_line()
            print("Interrupted at step {}: checkpoint saved in {}; rerun the same command to "
                  "resume.".format(self.global_step(), FLAGS.output_dir))
            cluster_lib.exit_now(130)
        if self.search:
            self.pick_best_arc()
        if self.sync:
            print("Steps per worker: {}".format(" ".join(
                str(n) for n in self.sess.run(self.sync.worker_steps))))

    def global_step(self):
        return int(self.sess.run(self.g.global_step))

    def save(self):
        checkpoints.save(self.sess, self.g.saver, FLAGS.output_dir, self.global_step())

    def child_step(self, prev_step):
        """One training step of the child (search: on a freshly sampled architecture); returns the
        global step after it (on a cluster, other workers' updates may have moved it further)."""
        (loss, step, lr, grad_norm, train_acc, batch, _), (worker_steps, cell) = self.sess.run(
            (self.train_fetches, self.cluster_fetches), options=self.sync.run_options() if self.sync else None)
        step = int(step)
        if self.sync:
            self.sync.check_workers(worker_steps)
        self.epoch_losses.append(loss)
        if not math.isfinite(loss):
            raise NonFiniteLoss("child loss is {} at step {}; stopped, the last checkpoint in {} is "
                                "kept".format(loss, step, FLAGS.output_dir))
        if step % self.num_train_batches and (
                step - self.first_step == FIRST_ESTIMATE_STEPS
                or time.time() - self.last_progress > PROGRESS_EVERY_S):
            self.print_progress(step)  # an early estimate; then in a long epoch once a minute
        if step // FLAGS.log_every > prev_step // FLAGS.log_every:
            self.summarize(step, {"child/loss": loss, "child/lr": lr, "child/grad_norm": grad_norm,
                                  "child/train_acc": train_acc / float(batch)})
            print("epoch = {:<4d}ch_step = {:<6d}loss = {:<8.6f} lr = {:<8.4f} |g| = {:<8.4f} "
                  "tr_acc = {:<3d}/{:>3d} mins = {:<10.2f}".format(
                      step // self.num_train_batches, step, loss, lr, grad_norm, train_acc, batch,
                      self.mins()))
            if cell:
                print(cluster_lib.cell_line(*cell))
        return step

    def end_of_epoch(self, step):
        epoch = step // self.num_train_batches
        if self.sync:
            self.sync.pause_watch()
        if self.search and trains_controller(epoch):
            print("Epoch {}: Training controller ({} updates of {} sampled cells)".format(
                epoch, FLAGS.controller_train_steps, FLAGS.controller_num_aggregate))
            self.train_controller(epoch)
        if self.search and epoch % FLAGS.controller_train_every == 0:
            self.print_sampled_arcs(epoch)
        if epoch % FLAGS.eval_every_epochs == 0 or step >= self.total_steps:
            print("Epoch {}: Eval".format(epoch))
            accuracies = self.evaluate_all(step)
            self.record_progress(epoch, accuracies)
        self.epoch_losses = []
        self.g.set_epochs_done(self.sess, epoch)
        self.save()
        if self.sync:  # a search's workers wait for this before their next epoch
            self.sync.release_epoch(self.sess, epoch)
        self.print_progress(step)

    def print_progress(self, step):
        """Prints progress_line for this step and restarts the clock of the mid-epoch lines."""
        self.last_progress = time.time()
        line = progress_line(step, self.num_train_batches, FLAGS.num_epochs, self.first_step,
                             self.last_progress - self.start)
        if self.search:  # not in the estimate: it has not run yet
            line += ", then the scoring of {} cells".format(2 * FLAGS.controller_num_final_arcs)
        print(line, flush=True)

    def evaluate_all(self, step):
        print("Eval at {}".format(step))
        accuracies = {}
        for split in ("test",) if train_with_valid() else ("valid", "test"):
            accuracy = self.evaluate(split)
            print("{}_accuracy: {:<6.4f}".format(split, accuracy))
            self.summarize(step, {"eval/{}_acc".format(split): accuracy})
            accuracies[split + "_acc"] = accuracy
        self.writer.flush()
        return accuracies

    def record_progress(self, epoch, accuracies):
        """Appends this epoch's figures to progress.tsv and redraws the progress plot."""
        loss = float(np.mean(self.epoch_losses)) if self.epoch_losses else None
        self.progress.add(epoch, loss=loss, **accuracies, **self.controller_state)
        if self.search:
            progress.plot_search_progress(self.arcs_path, self.progress,
                                          os.path.join(FLAGS.output_dir, "search_progress.png"))
        else:
            progress.plot_train_progress(self.progress,
                                         os.path.join(FLAGS.output_dir, "train_progress.png"))

    def evaluate(self, split, feed=None):
        """Accuracy on the whole split (scoring.evaluate); in a search without a cell in feed,
        batch i of the eval at the current epoch samples with its own sample key."""
        key_index = None
        if self.search and not (feed and self.g.eval_arc[0] in feed):
            epoch, which = self.global_step() // self.num_train_batches, ("valid", "test").index(split)
            key_index = lambda i: (epoch * 2 + which) * (1 << 20) + i  # noqa: E731
        return scoring.evaluate(self.sess, self.g, len(self.data["labels"][split]), split, feed,
                                key_index)[0]

    # ------------------------------------------------------------------------------ search only
    def train_controller(self, epoch):
        """Updates the controller until its train_step is controller_updates_by(epoch), each of
        controller_num_aggregate samples: in one process that many runs of train_op per update;
        on a cluster this chief's share (cluster.controller_phase)."""
        c, end = self.g.controller, controller_updates_by(epoch)
        done = int(self.sess.run(c.train_step))
        updates = max(end - done, 0)
        started = time.time()
        runs = iter(range(done * FLAGS.controller_num_aggregate, end * FLAGS.controller_num_aggregate))
        if self.sync:
            cluster_lib.controller_phase(self.sess, c, self.sync, end,
                                         lambda: self.controller_sample(next(runs)))
        else:
            for run_id in runs:
                self.controller_sample(run_id)
        seconds = time.time() - started
        print("Controller phase: {} updates in {:.1f} s ({:.2f} s per update)".format(
            updates, seconds, seconds / max(updates, 1)))

    def controller_sample(self, run_id):
        """One run of the controller's train_op (one sampled cell): run_id counts the controller's
        samples over the whole run (update u's k-th sample is u * controller_num_aggregate + k),
        the key of its cell and reward batch. Logs every log_every runs."""
        c = self.g.controller
        fetches = [c.loss, c.sample_entropy, c.lr, c.grad_norm, c.valid_acc, c.baseline, c.reward,
                   c.train_op]
        key = graph_lib.sample_key_of(graph_lib.CONTROLLER_KIND, run_id)
        loss, entropy, lr, grad_norm, valid_acc, baseline, reward, _ = self.sess.run(
            fetches, self.g.feed(self.sess, "reward", key))
        self.controller_state = {"baseline": baseline, "entropy": entropy}
        if not math.isfinite(loss):
            raise NonFiniteLoss("controller loss is {} at controller run {}; stopped, the last "
                                "checkpoint in {} is kept".format(loss, run_id, FLAGS.output_dir))
        if (run_id + 1) % FLAGS.log_every == 0:
            ctrl_step = int(self.sess.run(c.train_step))
            self.summarize(ctrl_step, {
                "controller/loss": loss, "controller/reward": reward, "controller/baseline": baseline,
                "controller/entropy": entropy, "controller/valid_acc": valid_acc})
            print("ctrl_step = {:<6d}loss = {:<7.3f} ent = {:<5.2f} lr = {:<6.4f} |g| = {:<8.4f} "
                  "acc = {:<6.4f} bl = {:<5.2f} mins = {:<.2f}".format(
                      ctrl_step, loss, entropy, lr, grad_norm, valid_acc, baseline, self.mins()))

    def print_sampled_arcs(self, epoch, num=10):
        """Samples `num` architectures, scores each on one valid batch, prints and records them.

        With random_search they come from the uniform sampler, whose entropy (the maximum) is
        recorded in place of the untrained controller's."""
        print("Here are {} architectures".format(num))
        rows = []
        for k in range(num):
            key = graph_lib.sample_key_of(graph_lib.EPOCH_SAMPLE_KIND, epoch * (1 << 20) + k)
            (normal_arc, reduce_arc), valid_acc, entropy = self.sess.run(
                [self.g.sampler.sample_arc, self.g.sampled_valid_acc, self.g.sampler.sample_entropy],
                self.g.feed(self.sess, "reward", key))
            arc = search_space.arc_to_string(normal_arc, reduce_arc)
            print("{}\nval_acc = {:<6.4f}\n{}".format(arc, valid_acc, "-" * 80))
            rows.append((epoch, "sample", arc, valid_acc, self.g.reward_batch_size))
        records.append_rows(self.arcs_path, rows)
        values = {"search/sampled_valid_acc": np.mean([r[3] for r in rows])}
        if FLAGS.random_search:
            self.controller_state = {"entropy": entropy}
            values["controller/entropy"] = entropy
        self.summarize(self.global_step(), values)

    def pick_best_arc(self):
        """Scores controller_num_final_arcs samples on the whole valid set; writes best_arc.txt."""
        best_path = os.path.join(FLAGS.output_dir, "best_arc.txt")
        if os.path.exists(best_path):
            best_arc, best_acc = open(best_path).read().strip(), None
        else:
            records.keep_rows_up_to(self.arcs_path, FLAGS.num_epochs, drop_sources=("final", "uniform"))
            best_arc, best_acc = self.score_final_arcs()
            records.write_atomic(best_path, best_arc + "\n")
        acc = "" if best_acc is None else "  valid_acc = {:.4f}".format(best_acc)
        print("Best architecture: {}{}".format(best_arc, acc))
        visualize.draw_arc(best_arc, FLAGS.output_dir, num_cells=FLAGS.child_num_cells, prefix="best_arc_")
        print("Retrain it with (main_child_trainer.py's defaults: 630 epochs of 15 layers, hours on a "
              "CPU; the README's quick start also gives the authors' CIFAR-10 recipe):\n  " +
              records.retrain_command(FLAGS, best_path))
        print("or, for a check in minutes:\n  " + records.retrain_command(FLAGS, best_path) +
              " --num_epochs 10 --child_num_layers 6 --n_aug_img 1 --output_dir output/final_quick")

    def score_final_arcs(self):
        """Scores controller_num_final_arcs of the sampler's cells and as many uniformly drawn
        ones on the whole valid set (arcs.tsv sources "final" and "uniform"); reports how the two
        compare (report_final_scores). Returns the best final candidate (arc, valid_acc)."""
        num = FLAGS.controller_num_final_arcs
        print("Scoring {0} sampled cells and {0} uniformly drawn ones on the whole valid set".format(num))
        n_valid = len(self.data["labels"]["valid"])
        rows = []
        for source, sampler, kind in (("final", self.g.sampler, graph_lib.FINAL_KIND),
                                      ("uniform", self.g.uniform_sampler, graph_lib.UNIFORM_FINAL_KIND)):
            arcs = [self.sess.run(sampler.sample_arc, {self.g.sample_key: graph_lib.sample_key_of(kind, k)})
                    for k in range(num)]
            for arc, acc in zip(arcs, scoring.score_arcs(self.sess, self.g, n_valid, arcs)):
                rows.append((FLAGS.num_epochs, source, search_space.arc_to_string(*arc), acc, n_valid))
                print("{} candidate: {}  valid_acc = {:.4f}".format(source, rows[-1][2], acc))
        records.append_rows(self.arcs_path, rows)
        best = max((r for r in rows if r[1] == "final"), key=lambda r: r[3])
        report_final_scores([r[3] for r in rows if r[1] == "final"],
                            [r[3] for r in rows if r[1] == "uniform"], best[3])
        progress.plot_search_progress(self.arcs_path, self.progress,
                                      os.path.join(FLAGS.output_dir, "search_progress.png"))
        return best[2], best[3]
