"""The loops of a cluster's non-chief workers (the chief runs loop.Loop; cluster.py has the
mechanics). Each writes nothing and returns the global step it ended at.

  worker_loop(sess, g, flags, sync)          a retraining's worker: child steps to the end
  search_worker_loop(sess, g, flags, sync)   a search's worker, in step with the chief
"""
import itertools

import cluster as cluster_lib
import reward as reward_lib
from controller_phase import controller_updates_by, trains_controller


def worker_loop(sess, g, flags, sync):
    """A retraining's non-chief worker: child steps to the end. g: graph.build's Graph;
    flags: the parsed flags; sync: this worker's cluster.SyncTraining."""
    return cluster_lib.worker_steps(sess, g.train, int(sess.run(g.global_step)),
                                    flags.num_epochs * g.num_train_batches, flags.log_every, sync)


def controller_sampler(sess, g, flags, sync):
    """run_sample(update) for cluster.controller_phase: one run of the controller's train_op,
    this worker's next controller sample of `update`, keyed apart from the chief's and the other
    workers' (reward.controller_keys)."""
    samples = itertools.count()  # this worker's controller samples in this process

    def run_sample(update):
        keys = reward_lib.controller_keys(next(samples), update, flags.controller_common_reward_batch,
                                          sync.cluster.task_index)
        sess.run(g.controller.train_op, reward_lib.feed(sess, g, *keys))
    return run_sample


def search_worker_loop(sess, g, flags, sync):
    """A search's non-chief worker, in step with the chief (cluster.py): each child epoch, then at
    its end its share of the controller phase, then a wait until the chief has evaluated and
    saved (sync.epoch_released). The chief alone scores the final cells."""
    steps_per_epoch, total = g.num_train_batches, flags.num_epochs * g.num_train_batches
    step = int(sess.run(g.global_step))
    run_sample = controller_sampler(sess, g, flags, sync)
    while True:
        epoch = step // steps_per_epoch
        if epoch > int(sess.run(g.epochs_done)):  # an epoch end the chief has not finished
            if trains_controller(flags, epoch):
                cluster_lib.controller_phase(sess, g.controller, sync, controller_updates_by(flags, epoch),
                                             run_sample)
            if step >= total:
                return step
            cluster_lib.wait_for(sess, sync.epoch_released, lambda done: done >= epoch,
                                 "the chief's end of epoch {}".format(epoch), sync.wait_secs(sess))
        if step >= total:
            return step
        step = cluster_lib.worker_steps(sess, g.train, step, (epoch + 1) * steps_per_epoch,
                                        flags.log_every, sync)
