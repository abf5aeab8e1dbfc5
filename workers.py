"""The loops of a cluster's non-chief workers (the chief runs loop.Loop; cluster.py has the
mechanics). Each writes nothing and returns the global step it ended at.

  worker_loop(sess, g, flags, sync)          a retraining's worker: child steps to the end
  search_worker_loop(sess, g, flags, sync)   a search's worker, in step with the chief
"""
import itertools

import cluster as cluster_lib
import graph as graph_lib
from controller_phase import controller_updates_by, trains_controller


def worker_loop(sess, g, flags, sync):
    """A retraining's non-chief worker: child steps to the end. g: graph.build's Graph;
    flags: the parsed flags; sync: this worker's cluster.SyncTraining."""
    return cluster_lib.worker_steps(sess, g.train, int(sess.run(g.global_step)),
                                    flags.num_epochs * g.num_train_batches, flags.log_every, sync)


def worker_sample_key(sync, k):
    """The sample key of a non-chief worker's k-th controller sample: apart from the chief's
    (indices below 2^40) and the other workers'. A cluster's samples depend on which worker
    draws them, so they repeat with the seed but are not exact across a resume."""
    return graph_lib.sample_key_of(graph_lib.CONTROLLER_KIND, (sync.cluster.task_index << 40) + k)


def search_worker_loop(sess, g, flags, sync):
    """A search's non-chief worker, in step with the chief (cluster.py): each child epoch, then at
    its end its share of the controller phase, then a wait until the chief has evaluated and
    saved (sync.epoch_released). The chief alone scores the final cells."""
    steps_per_epoch, total = g.num_train_batches, flags.num_epochs * g.num_train_batches
    step = int(sess.run(g.global_step))
    samples = itertools.count()  # this worker's controller samples in this process
    while True:
        epoch = step // steps_per_epoch
        if epoch > int(sess.run(g.epochs_done)):  # an epoch end the chief has not finished
            if trains_controller(flags, epoch):
                cluster_lib.controller_phase(sess, g.controller, sync, controller_updates_by(flags, epoch),
                                             lambda: sess.run(g.controller.train_op, g.feed(
                                                 sess, "reward", worker_sample_key(sync, next(samples)))))
            if step >= total:
                return step
            cluster_lib.wait_for(sess, sync.epoch_released, lambda done: done >= epoch,
                                 "the chief's end of epoch {}".format(epoch), sync.wait_secs(sess))
        if step >= total:
            return step
        step = cluster_lib.worker_steps(sess, g.train, step, (epoch + 1) * steps_per_epoch,
                                        flags.log_every, sync)
