"""The set-up shared by both entry scripts, and the choice of loop.

main(mode) with mode "search" (main_controller_child_trainer.py) or "final" (main_child_trainer.py):
  1. parse and check flags, read the data, prepare output_dir (resume, or a safe reset);
  2. build the graph (graph.py) and restore the latest checkpoint if there is one;
  3. train: loop.Loop in one process or on a cluster's chief (child epochs, controller phases,
     eval, checkpoints, a search's end), workers.py's loops on a cluster's other workers.
main alone reads enas_flags' parsed flags; everything below it gets them as an argument.
Bad input raises errors.UserError, printed as one line with exit status 2.
"""
import contextlib
import os
import sys

import utils  # first: it imports TensorFlow quietly

from absl import flags as absl_flags
import tensorflow.compat.v1 as tf

import checkpoints
import cluster as cluster_lib
import data_utils
import enas_flags
import export
import graph as graph_lib
import recompute
import records
import search_space
import workers
from errors import NonFiniteLoss, UserError, WriteFailed
from loop import Loop


def main(mode):
    """Entry point of both scripts: exit 0 on success, 2 on bad input, 1 on a non-finite loss,
    a lost cluster or a file it cannot write."""
    tf.get_logger().setLevel("ERROR")
    tf.disable_v2_behavior()
    tf.enable_resource_variables()  # ref variables race with in-place momentum updates (NaN from step 2)
    enas_flags.define_flags(mode)
    flags = enas_flags.FLAGS
    try:
        flags(sys.argv)
        utils.probe_devices_quietly()
        run(flags, mode)
    except (UserError, absl_flags.Error) as e:
        exit_with("error: {}".format(e), 2)
    except (NonFiniteLoss, cluster_lib.ClusterError) as e:
        exit_with("error: {}".format(e), 1)
    except WriteFailed as e:
        exit_with("error: {}; the run stopped and its last checkpoint in {} is kept: free space, "
                  "then rerun the same command to resume".format(e, flags.output_dir), 1)
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.AbortedError) as e:
        exit_with("error: {}".format(cluster_lib.describe(e)), 1)  # only clusters time out or get lost
    except KeyboardInterrupt:
        exit_with("Interrupted", 130)


def exit_with(message, status):
    """Prints message on stderr and exits with status (see cluster_lib.exit_now)."""
    print(message, file=sys.stderr)
    cluster_lib.exit_now(status)


def run(flags, mode):
    """Checks everything the user gave (flags: the parsed enas_flags), then trains (see the
    module docstring). A retraining of a search's best_arc.txt first takes the search's data
    flags the command line does not give (records.take_search_data_flags); --channel not given
    is read from the data (data_utils.settle_channel)."""
    search = mode == "search"
    if not search:
        records.take_search_data_flags(flags)
    enas_flags.check_flags(flags, mode)
    fixed_arc = None if search else search_space.parse_arc(flags.child_fixed_arc, flags.child_num_cells)
    cluster = cluster_lib.from_flags(flags)
    if cluster and cluster.job == "ps":
        return cluster_lib.serve(cluster)
    chief = cluster is None or cluster.is_chief
    flags.channel = data_utils.settle_channel(flags.channel, flags.train_data_dir)
    data = read_data(flags)
    if chief:  # only the chief of a cluster writes to output_dir
        run_flags = {**records.shaping_flags(flags, mode, fixed_arc, len(data["class_names"])),
                     **records.data_source_flags(flags)}
        records.prepare_output_dir(flags.output_dir, flags.reset_output_dir, run_flags)
        if not search and flags.export_only:
            return export_model(flags, data, fixed_arc)
        sys.stdout = utils.Logger(os.path.join(flags.output_dir, "stdout"))
        enas_flags.print_user_flags()
    build_and_train(flags, data, fixed_arc, cluster)
    if chief and not search:
        export_model(flags, data, fixed_arc)


def read_data(flags):
    """The three splits of the data flags (data_utils.read_data). flags: the parsed flags; a
    retraining with --train_with_valid trains on train + valid."""
    return data_utils.read_data(flags.train_data_dir, flags.val_data_dir, flags.test_data_dir,
                                flags.channel, flags.img_size, flags.n_aug_img, flags.skip_bad_images,
                                flags.batch_size, getattr(flags, "train_with_valid", False))


def build_and_train(flags, data, fixed_arc, cluster):
    """Builds the graph (a search's when fixed_arc is None) and trains: the whole loop in one
    process or a cluster's chief, else a cluster worker's own loop. cluster: this process's
    cluster.Cluster, or None."""
    search = fixed_arc is None
    if flags.seed is not None:  # each worker its own random stream (dropout, controller samples)
        tf.set_random_seed(flags.seed + (cluster.task_index if cluster else 0))
    sync = cluster_lib.SyncTraining(cluster) if cluster else None
    start_step = checkpoints.step_of(checkpoints.latest(flags.output_dir)) if cluster is None else 0
    with cluster.device_scope() if cluster else contextlib.nullcontext():
        g = graph_lib.build(flags, data, fixed_arc, sync, start_step)
    sess = open_session(flags, g, sync)
    if cluster is None or cluster.is_chief:
        Loop(sess, g, data, flags, search, sync).train()
    else:
        step = (workers.search_worker_loop if search else workers.worker_loop)(sess, g, flags, sync)
        print("worker {}: done, {} steps of its own, global step {}".format(
            cluster.task_index, sync.own_steps, step), flush=True)
    sync.close(sess) if sync else sess.close()  # not on errors: see cluster_lib.exit_now


def export_model(flags, data, fixed_arc):
    print("SavedModel written to {}".format(
        export.export_from_checkpoint(flags, data, fixed_arc, flags.output_dir)))


def open_session(flags, g, sync):
    """A session with the latest checkpoint in output_dir restored, or freshly initialised; on a
    cluster's worker, one that waits for the chief to do that. Asserts what the graph's
    recomputed calls need of the session (recompute.check_config)."""
    config = graph_lib.session_config(flags, search=g.controller is not None)
    recompute.check_config(config, tf.get_default_graph())
    if sync:
        return sync.open_session(config, lambda sess: restore_or_init(sess, g, flags.output_dir))
    sess = tf.Session(config=config)
    restore_or_init(sess, g, flags.output_dir)
    return sess


def restore_or_init(sess, g, output_dir):
    """Restores the checkpoint in output_dir if there is one (checkpoints.latest), else
    initialises every variable."""
    latest = checkpoints.latest(output_dir)
    if latest:
        checkpoints.restore(sess, g.saver, latest, output_dir)
        print("Resumed from {} at step {}".format(latest, int(sess.run(g.global_step))))
        if g.controller:  # a stop inside a controller phase: its redo starts with whole updates
            sess.run(g.controller.reset_op)
    else:
        sess.run(g.init_op)
