"""Data-parallel search and retraining on TensorFlow's cluster runtime (between-graph replication).

Every process of a cluster runs the same trainer command plus its role, given by
--job_name/--task_index/--ps_hosts/--worker_hosts or by the standard TF_CONFIG variable:
  ps       holds the variables (replica_device_setter puts every variable there) and serves;
  worker   builds the whole graph on its own device, trains on its own shard of the training set,
           and pushes its gradients; SyncReplicasOptimizer averages num_aggregate of them into one
           Momentum update (one global step). Worker 0 is the chief: it initialises or restores the
           variables, runs the aggregation queue, evaluates, and alone writes to output_dir.

API
  ClusterError                 the cluster broke (timeout, lost task): one line, exit status 1
  exit_now(status)             the way out of a process that may hold a session on a broken cluster
  from_flags(flags) -> Cluster or None (one process)
  serve(cluster)               a parameter server: serves until killed
  Cluster                      this process's role; device_scope() and session_config(config)
  SyncTraining(cluster)        wraps the optimizer, counts each worker's steps, opens the session
  worker_steps(...)            a non-chief worker's child steps up to a global step
  controller_phase(...)        a search's controller phase, every worker scoring its share of samples
  wait_for(...)                polls a shared value until a condition holds (bounded)

A search runs in lockstep: in each child epoch every worker trains the cell of the global step
(graph._cell_of_step); at the epoch's end all workers score controller samples in parallel and the
chief applies each update (controller_phase); then the workers wait until the chief has
evaluated and saved (SyncTraining.release_epoch). The chief alone evaluates, scores the final cells and writes.
"""
import json
import os
import sys
import time

import tensorflow.compat.v1 as tf

import search_space
from errors import UserError

POLL_SECS = 0.05  # wait_for's pause between two reads of a shared value
# A worker's pause between two looks at whether the chief has initialised the variables
# (TensorFlow's default, 30 s, left a worker idle for up to 30 s after the chief was ready).
READY_POLL_SECS = 0.5
STARTUP_SECS = 600  # extra wait for the first step: every task builds its graph and warms up first
_session_open = False  # this process holds a session on a cluster (see exit_now)


class Cluster(object):
    """This process's place in the cluster: spec (tf.train.ClusterSpec), job ("ps" or "worker"),
    task_index, num_workers, num_aggregate (gradients per update), timeout_secs."""

    def __init__(self, spec, job, task_index, num_aggregate, timeout_secs):
        self.spec, self.job, self.task_index = spec, job, task_index
        self.num_workers = spec.num_tasks("worker")
        self.num_aggregate, self.timeout_secs = num_aggregate, timeout_secs
        self.is_chief = job == "worker" and task_index == 0
        self.worker_device = "/job:worker/task:{}".format(task_index)

    def device_scope(self):
        """Graph-building scope: every variable on a parameter server, every other op on this worker."""
        return tf.device(tf.train.replica_device_setter(worker_device=self.worker_device, cluster=self.spec))

    def session_config(self, config):
        """This worker only talks to the parameter servers and itself, so a worker that is down does
        not keep the others from starting."""
        config.device_filters.extend(["/job:ps", self.worker_device])
        return config


class ClusterError(Exception):
    """A distributed run cannot go on (a task stopped or cannot be reached): exit status 1."""


def _hosts(text, flag):
    """'host:port,host:port' -> list of host:port strings; UserError naming the flag otherwise."""
    hosts = [h.strip() for h in (text or "").split(",") if h.strip()]
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise UserError("--{} must be comma-separated host:port entries, got {!r}".format(flag, text))
    if not hosts:
        raise UserError("--{} is required with --job_name (comma-separated host:port)".format(flag))
    return hosts


def _from_tf_config(text):
    """TF_CONFIG {"cluster": {"chief"?, "worker", "ps"}, "task": {"type", "index"}} -> the same
    (job, task_index, ps_hosts, worker_hosts) as the flags; a "chief" task becomes worker 0."""
    try:
        config = json.loads(text)
        jobs, task = config["cluster"], config["task"]
        chief, workers, ps = jobs.get("chief", []), jobs.get("worker", []), jobs["ps"]
        job, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError("TF_CONFIG must be JSON with cluster.ps, cluster.worker and task.type/index "
                        "({}: {})".format(type(e).__name__, e))
    if job == "worker":
        index += len(chief)
    elif job == "chief":
        job = "worker"
    return job, index, ",".join(ps), ",".join(chief + workers)


def from_flags(flags):
    """The cluster this process belongs to, or None for a plain single-process run."""
    job, index, ps_hosts, worker_hosts = flags.job_name, flags.task_index, flags.ps_hosts, flags.worker_hosts
    if job is None and os.environ.get("TF_CONFIG"):
        job, index, ps_hosts, worker_hosts = _from_tf_config(os.environ["TF_CONFIG"])
    if job is None:
        return None
    if job not in ("ps", "worker"):
        raise UserError("--job_name must be ps or worker, got {!r}".format(job))
    ps, workers = _hosts(ps_hosts, "ps_hosts"), _hosts(worker_hosts, "worker_hosts")
    num_tasks = len(ps) if job == "ps" else len(workers)
    if not 0 <= index < num_tasks:
        raise UserError("--task_index must be in [0, {}) for job {}, got {}".format(num_tasks, job, index))
    num_aggregate = flags.child_num_aggregate or len(workers)
    if not 1 <= num_aggregate <= len(workers):
        raise UserError("--child_num_aggregate must be in [1, {}] (the number of workers), got {}".format(
            len(workers), num_aggregate))
    spec = tf.train.ClusterSpec({"ps": ps, "worker": workers})
    return Cluster(spec, job, index, num_aggregate, flags.sync_timeout_secs)


def _server(cluster, config=None):
    try:
        return tf.distribute.Server(cluster.spec, job_name=cluster.job, task_index=cluster.task_index,
                                    config=config)
    except tf.errors.OpError as e:
        raise UserError("cannot start {} {} at {} (is the port in use?): {}".format(
            cluster.job, cluster.task_index,
            cluster.spec.task_address(cluster.job, cluster.task_index), e.message.splitlines()[0]))


def serve(cluster):
    """Runs a parameter server until the process is killed (the launcher stops it at the end)."""
    server = _server(cluster)
    print("ps {} serving at {}".format(cluster.task_index, server.target), flush=True)
    server.join()


class SyncTraining(object):
    """Synchronous data parallelism: every update averages num_aggregate workers' gradients.

    Use: wrap(optimizer) inside build_train, count_steps(train_op) after it (both under
    cluster.device_scope()), then open_session(...). The chief starts with no spare tokens, so the
    first update needs a gradient from a second worker; after that any num_aggregate fresh gradients
    make an update and stale ones are dropped (SyncReplicasOptimizer's rule).
    """

    def __init__(self, cluster):
        self.cluster = cluster
        self.optimizer = None
        self._last_change = {}
        self._paused_secs, self._paused_since = 0.0, None  # epoch ends, off check_workers' clock
        self._first_step_done = False
        self.own_steps = 0

    def run_options(self):
        """Options of a training step: it fails after timeout_secs without an update, the first step
        after STARTUP_SECS more (every worker is still building its graph and warming up)."""
        secs = self.cluster.timeout_secs + (0 if self._first_step_done else STARTUP_SECS)
        self._first_step_done = True
        return tf.RunOptions(timeout_in_ms=int(secs * 1000))

    def wrap(self, optimizer):
        c = self.cluster
        self.optimizer = tf.train.SyncReplicasOptimizer(
            optimizer, replicas_to_aggregate=c.num_aggregate, total_num_replicas=c.num_workers)
        return self.optimizer

    def count_steps(self, train_op):
        """train_op followed by worker_steps[task_index] += 1; worker_steps (int64 [num_workers], on
        the ps, not checkpointed) shows every worker's contribution and lets the chief notice a
        worker that stopped. Also creates epoch_released (int64 [], on the ps, not checkpointed)."""
        self.worker_steps = tf.get_variable(
            "worker_steps", [self.cluster.num_workers], tf.int64, tf.zeros_initializer(),
            trainable=False, collections=[tf.GraphKeys.LOCAL_VARIABLES])
        self.epoch_released = tf.get_variable(  # the chief's last finished epoch end (release_epoch)
            "epoch_released", [], tf.int64, tf.zeros_initializer(), trainable=False,
            collections=[tf.GraphKeys.LOCAL_VARIABLES])
        self._released_value = tf.placeholder(tf.int64, [])
        self._release = self.epoch_released.assign(self._released_value)
        with tf.control_dependencies([train_op]):
            return tf.group(tf.scatter_add(self.worker_steps, [self.cluster.task_index], [1]))

    def open_session(self, server_config, restore_or_init):
        """A session on the cluster. The chief calls restore_or_init(sess) (restore the latest
        checkpoint or initialise), then starts the aggregation queue; a worker waits until the chief
        is done (at most timeout_secs)."""
        global _session_open
        _session_open = True
        server = _server(self.cluster, server_config)
        config = self.cluster.session_config(server_config)
        if not self.cluster.is_chief:
            return self._wait_for_chief(server, config)
        self.optimizer.ready_for_local_init_op.mark_used()  # the workers' check, not the chief's
        sess = tf.Session(server.target, config=config)
        restore_or_init(sess)
        sess.run([tf.variables_initializer([self.worker_steps, self.epoch_released]),
                  self.optimizer.chief_init_op])
        sess.run(self.optimizer.get_init_tokens_op(num_tokens=0))
        self.coordinator = tf.train.Coordinator()
        self.optimizer.get_chief_queue_runner().create_threads(
            sess, coord=self.coordinator, daemon=True, start=True)
        return sess

    def _wait_for_chief(self, server, config):
        """A worker's session on server (a tf.distribute.Server), once the chief has restored or
        initialised the variables; ClusterError after timeout_secs + STARTUP_SECS."""
        c = self.cluster
        ready_op = tf.report_uninitialized_variables()
        ready_op.mark_used()  # tf_should_use would warn at exit; the SessionManager runs it
        manager = tf.train.SessionManager(
            local_init_op=self.optimizer.local_step_init_op, ready_op=ready_op,
            ready_for_local_init_op=self.optimizer.ready_for_local_init_op,
            recovery_wait_secs=READY_POLL_SECS)
        sess = manager.wait_for_session(server.target, config=config,
                                        max_wait_secs=c.timeout_secs + STARTUP_SECS)
        if sess is None:
            raise ClusterError("worker {}: the chief (worker 0) did not initialise the variables within "
                               "{} s".format(c.task_index, c.timeout_secs + STARTUP_SECS))
        return sess

    def wait_secs(self, sess):
        """The bound of a wait on the other workers: timeout_secs, plus STARTUP_SECS while one of
        them has not made its first step (it may still be building its graph)."""
        return self.cluster.timeout_secs + (0 if all(sess.run(self.worker_steps)) else STARTUP_SECS)

    def pause_watch(self):
        """Chief, at an epoch end: the workers' step counts stand still until release_epoch, and
        that time does not count towards check_workers' timeout."""
        self._paused_since = time.time()

    def release_epoch(self, sess, epoch):
        """Chief: the end of `epoch` is done (eval, checkpoint); a search's workers, which waited
        for it, start the next epoch, and check_workers' clock runs again."""
        sess.run(self._release, {self._released_value: epoch})
        self.resume_watch()

    def resume_watch(self):
        if self._paused_since is not None:
            self._paused_secs += time.time() - self._paused_since
            self._paused_since = None

    def check_workers(self, worker_steps, now=None):
        """Chief: raises ClusterError when a worker's step count has not moved for timeout_secs
        of child steps (epoch ends excluded, pause_watch)."""
        now = (time.time() if now is None else now) - self._paused_secs
        for task, count in enumerate(worker_steps):
            last_count, since = self._last_change.get(task, (None, now))
            if count != last_count:
                self._last_change[task] = (count, now)
            elif now - since > self.cluster.timeout_secs:
                raise ClusterError("worker {} made no training step for {:.0f} s (stopped or unreachable); "
                                   "stopping, the last checkpoint is kept".format(task, now - since))

    def close(self, sess):
        """Closes the session of a run that ended well (stops the chief's aggregation queue first)."""
        global _session_open
        if self.cluster.is_chief:
            self.coordinator.request_stop()
        sess.close()
        _session_open = False


def exit_now(status):
    """sys.exit(status), or os._exit(status) after flushing while a cluster session is open: closing a
    session whose parameter server is gone waits forever (also when Python closes it at exit)."""
    if not _session_open:
        sys.exit(status)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def describe(error):
    """One line for a cluster failure seen as a TensorFlow error (their own text is many lines)."""
    if isinstance(error, tf.errors.DeadlineExceededError):
        return "no synchronous update arrived within --sync_timeout_secs: another worker or the chief " \
               "has stopped; the last checkpoint is kept"
    return "lost the cluster ({}): a parameter server or worker has stopped or cannot be reached; the " \
           "last checkpoint is kept".format(type(error).__name__)


def cell_line(cell_step, normal_arc, reduce_arc):
    """'cell of step S: <arc>' for the values of a search's graph.Train.cell in a training run:
    which cell this process trained in that run."""
    return "cell of step {}: {}".format(cell_step, search_space.arc_to_string(normal_arc, reduce_arc))


def worker_steps(sess, train, step, end_step, log_every, sync):
    """A non-chief worker's child steps (train: a graph.Train) from global step `step` until it
    reaches end_step (writes nothing); returns the global step. sync.own_steps counts this
    worker's steps."""
    task = sync.cluster.task_index
    fetches = (train.loss, train.step, train.train_op, train.cell or ())
    while step < end_step:
        loss, step, _, cell = sess.run(fetches, options=sync.run_options())
        step, sync.own_steps = int(step), sync.own_steps + 1
        if sync.own_steps % log_every == 0:
            print("worker {} own_step = {:<6d} global_step = {:<6d} loss = {:.6f}".format(
                task, sync.own_steps, step, loss), flush=True)
            if cell:
                print("worker {} {}".format(task, cell_line(*cell)), flush=True)
    return step


def wait_for(sess, value, done, what, timeout_secs):
    """Reads the tensor `value` every POLL_SECS until done(its value); returns that value.
    ClusterError naming `what` when the value has not changed for timeout_secs."""
    last, since = None, time.time()
    while True:
        current = sess.run(value)
        if done(current):
            return current
        if current != last:
            last, since = current, time.time()
        elif time.time() - since > timeout_secs:
            raise ClusterError("waited {:.0f} s for {} (a task stopped or is unreachable); "
                               "stopping, the last checkpoint is kept".format(time.time() - since, what))
        time.sleep(POLL_SECS)


def controller_phase(sess, controller, sync, end_update, run_sample):
    """A search's controller phase, run by every worker at the same epoch end: updates until
    controller.train_step reaches end_update.

    Each update averages controller.num_aggregate samples; worker t draws and scores those with
    index k % num_workers == t, each by run_sample(update) (one run of the controller's train_op
    for controller update `update`: sample, reward, baseline, accumulate). The chief applies the
    update once all samples are in; the others wait for train_step to move before their next
    samples, so every sample of an update comes from the same weights."""
    c, n = sync.cluster, controller.num_aggregate
    share = len(range(c.task_index, n, c.num_workers))
    update = int(sess.run(controller.train_step))  # it cannot move before every share is in
    while update < end_update:
        for _ in range(share):
            run_sample(update)
        if c.is_chief:
            wait_for(sess, controller.accum_count, lambda count: count >= n,
                     "the workers' controller samples", sync.wait_secs(sess))
            sess.run(controller.apply_op)
        else:
            wait_for(sess, controller.train_step, lambda step: step > update,
                     "the chief's controller update", sync.wait_secs(sess))
        update += 1
