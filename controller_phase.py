"""A search's controller phase at an epoch end, as one process or a cluster's chief runs it, and
the cells the sampler shows after it.

  trains_controller(flags, epoch)       whether the end of `epoch` has a controller phase
  controller_updates_by(flags, epoch)   the controller's train_step after that phase
  ControllerPhase(sess, g, flags, records, mins, sync=None)
    .end_of_epoch(epoch)       what an epoch end of the search adds: the two below, as the flags say
    .train(epoch)              the phase's updates, each of controller_num_aggregate sampled cells
    .print_sampled_arcs(epoch) ten cells sampled, scored on one reward batch each, recorded
    .state                     {"baseline", "entropy"} after the last sample, for progress.tsv
A cluster's other workers run their share of the phase in workers.search_worker_loop.
"""
import math
import time

import numpy as np

import cluster as cluster_lib
import reward as reward_lib
import search_space
from errors import NonFiniteLoss


def trains_controller(flags, epoch):
    """Whether a search's end of `epoch` has a controller phase: every controller_train_every
    epochs after the uniform warm-up, never in a random search."""
    return (epoch % flags.controller_train_every == 0 and epoch > flags.uniform_warmup_epochs
            and not flags.random_search)


def controller_updates_by(flags, epoch):
    """The controller's train_step after the controller phase of `epoch` (a resumed phase does
    only the updates it still lacks): controller_train_steps per phase since the warm-up."""
    every = flags.controller_train_every
    return max(epoch // every - flags.uniform_warmup_epochs // every, 0) * flags.controller_train_steps


class ControllerPhase(object):
    """The controller's training at a search's epoch ends, and the sampled cells it prints."""

    def __init__(self, sess, g, flags, records, mins, sync=None):
        """g: a search's graph.Graph; records: an evaluation.Records; mins() -> minutes since the
        loop started (log lines); sync: the cluster.SyncTraining of a cluster's chief, else None."""
        self.sess, self.g, self.flags, self.records = sess, g, flags, records
        self.mins, self.sync = mins, sync
        self.state = {}

    def end_of_epoch(self, epoch):
        """The search's part of the end of `epoch`: the controller phase (trains_controller), then
        the sampled cells every controller_train_every epochs."""
        flags = self.flags
        if trains_controller(flags, epoch):
            print("Epoch {}: Training controller ({} updates of {} sampled cells)".format(
                epoch, flags.controller_train_steps, flags.controller_num_aggregate))
            self.train(epoch)
        if epoch % flags.controller_train_every == 0:
            self.print_sampled_arcs(epoch)

    def train(self, epoch):
        """Updates the controller until its train_step is controller_updates_by(epoch), each of
        controller_num_aggregate samples: in one process that many runs of train_op per update;
        on a cluster this chief's share (cluster.controller_phase)."""
        c, n = self.g.controller, self.flags.controller_num_aggregate
        end = controller_updates_by(self.flags, epoch)
        done = int(self.sess.run(c.train_step))
        updates = max(end - done, 0)
        started = time.time()
        runs = iter(range(done * n, end * n))
        if self.sync:
            cluster_lib.controller_phase(self.sess, c, self.sync, end,
                                         lambda update: self.sample(next(runs), update))
        else:
            for run_id in runs:
                self.sample(run_id, run_id // n)
        seconds = time.time() - started
        print("Controller phase: {} updates in {:.1f} s ({:.2f} s per update)".format(
            updates, seconds, seconds / max(updates, 1)))

    def sample(self, run_id, update):
        """One run of the controller's train_op (one sampled cell of controller update `update`):
        run_id counts the controller's samples over the whole run (update u's k-th sample is
        u * controller_num_aggregate + k; reward.controller_keys keys its cell and reward batch).
        Logs every log_every runs."""
        c, g = self.g.controller, self.g
        fetches = [c.loss, c.sample_entropy, c.lr, c.grad_norm, g.sampled_valid_acc, c.baseline, c.reward,
                   c.train_op]
        keys = reward_lib.controller_keys(run_id, update, self.flags.controller_common_reward_batch)
        loss, entropy, lr, grad_norm, valid_acc, baseline, reward, _ = self.sess.run(
            fetches, reward_lib.feed(self.sess, g, *keys))
        self.state = {"baseline": baseline, "entropy": entropy}
        if not math.isfinite(loss):
            raise NonFiniteLoss("controller loss is {} at controller run {}; stopped, the last "
                                "checkpoint in {} is kept".format(loss, run_id, self.flags.output_dir))
        if (run_id + 1) % self.flags.log_every == 0:
            ctrl_step = int(self.sess.run(c.train_step))
            self.records.scalars(ctrl_step, {
                "controller/loss": loss, "controller/reward": reward, "controller/baseline": baseline,
                "controller/entropy": entropy, "controller/valid_acc": valid_acc})
            print("ctrl_step = {:<6d}loss = {:<7.3f} ent = {:<5.2f} lr = {:<6.4f} |g| = {:<8.4f} "
                  "acc = {:<6.4f} bl = {:<5.2f} mins = {:<.2f}".format(
                      ctrl_step, loss, entropy, lr, grad_norm, valid_acc, baseline, self.mins()))

    def print_sampled_arcs(self, epoch, num=10):
        """Samples `num` architectures, scores each on one reward batch, prints and records them
        (arcs.tsv source "sample").

        With random_search they come from the uniform sampler, whose entropy (the maximum) is
        recorded in place of the untrained controller's."""
        print("Here are {} architectures".format(num))
        g, rows = self.g, []
        for k in range(num):
            key = reward_lib.sample_key_of(reward_lib.EPOCH_SAMPLE_KIND, epoch * (1 << 20) + k)
            feed = reward_lib.feed(self.sess, g, key)
            (normal_arc, reduce_arc), valid_acc, entropy = self.sess.run(
                [g.sampler.sample_arc, g.sampled_valid_acc, g.sampler.sample_entropy], feed)
            arc = search_space.arc_to_string(normal_arc, reduce_arc)
            print("{}\nval_acc = {:<6.4f}\n{}".format(arc, valid_acc, "-" * 80))
            rows.append((epoch, "sample", arc, valid_acc, len(feed[g.eval_labels])))
        self.records.add_arcs(rows)
        values = {"search/sampled_valid_acc": np.mean([r[3] for r in rows])}
        if self.flags.random_search:
            self.state = {"entropy": entropy}
            values["controller/entropy"] = entropy
        self.records.scalars(int(self.sess.run(g.global_step)), values)
