"""The one checkpoint of an output_dir: find it, check it, restore it, save the next one.

  latest(output_dir) -> prefix or None   the checkpoint to resume from; UserError (exit 2) if
                                         output_dir holds checkpoint files that cannot be resumed
  restore(sess, saver, prefix, output_dir)   UserError naming the damaged file, or the model
                                         mismatch, instead of TensorFlow's traceback
  save(sess, saver, output_dir, step)    errors.WriteFailed (exit 1) if it cannot be written
  step_of(prefix) -> int                 the global step a checkpoint holds (0 for None)

A run that cannot resume stops and says what to do; nothing here deletes a file (the Saver drops
the previous checkpoint only once the next one is whole). `checkpoint` names the latest one by a
path relative to output_dir (graph.py's Saver(save_relative_paths=True)), and latest() reads only
its file name, so a moved or copied output_dir resumes from its own files.
"""
import glob
import os
import re

import tensorflow.compat.v1 as tf

from errors import UserError, WriteFailed, cause_of

STATE_FILE = "checkpoint"  # TensorFlow's text file naming the latest model.ckpt-N
PREFIX = "model.ckpt"
START_OVER = ("nothing was deleted; move {} away to keep it and start over with another "
              "--output_dir, or pass --reset_output_dir to start over in it")


def _steps_on_disk(output_dir):
    """Sorted N of the model.ckpt-N.index files in output_dir."""
    names = glob.glob(os.path.join(glob.escape(output_dir), PREFIX + "-*.index"))
    return sorted(int(m.group(1)) for m in (re.search(r"-(\d+)\.index$", n) for n in names) if m)


def latest(output_dir):
    """The prefix (output_dir/model.ckpt-N) named by output_dir/checkpoint, None for a new run.

    A `checkpoint` file that cannot be parsed or names a step whose .index file is missing raises
    UserError: TensorFlow would report no checkpoint and the run would silently start over (and
    trim arcs.tsv to epoch 0). model.ckpt-N files without a `checkpoint` file (a kill between the
    two writes of the first save) resume from the latest N whose .index exists: the Saver writes
    a checkpoint's .index last, so such a checkpoint is whole."""
    state_path = os.path.join(output_dir, STATE_FILE)
    if not os.path.exists(state_path):
        steps = _steps_on_disk(output_dir)
        if not steps:
            return None
        print("{} has no '{}' file; resuming from {}-{}, its latest checkpoint".format(
            output_dir, STATE_FILE, PREFIX, steps[-1]))
        return os.path.join(output_dir, "{}-{}".format(PREFIX, steps[-1]))
    try:
        state = tf.train.get_checkpoint_state(output_dir)
    except Exception:  # noqa: BLE001  (a text-format parse error or ValueError, by TF version)
        state = None
    if state is None or not state.model_checkpoint_path:
        raise UserError("--output_dir {}: {} is damaged (it names no checkpoint); {}".format(
            output_dir, state_path, START_OVER.format(output_dir)))
    prefix = os.path.join(output_dir, os.path.basename(state.model_checkpoint_path))
    if not os.path.exists(prefix + ".index"):
        raise UserError("--output_dir {}: {} names {}, but {}.index is missing; {}".format(
            output_dir, state_path, os.path.basename(prefix), prefix, START_OVER.format(output_dir)))
    return prefix


def step_of(prefix):
    """The global step of checkpoint `prefix` (model.ckpt-<step>, as save() names it); 0 for None."""
    return 0 if prefix is None else int(re.search(r"-(\d+)$", prefix).group(1))


def _damaged_file(prefix):
    """The file of checkpoint `prefix` that cannot be read (.index or a .data shard), or None."""
    try:
        reader = tf.train.NewCheckpointReader(prefix)
    except Exception:  # noqa: BLE001  (an OpError subclass or a plain RuntimeError, by TF version)
        return prefix + ".index"
    try:
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception:  # noqa: BLE001  (IndexError for a short file, OpError for a bad checksum)
        shards = sorted(glob.glob(glob.escape(prefix) + ".data-*"))
        return shards[0] if len(shards) == 1 else prefix + ".data-*"
    return None


def restore(sess, saver, prefix, output_dir):
    """saver.restore(sess, prefix), with one-line UserErrors for a damaged or mismatched checkpoint."""
    try:
        saver.restore(sess, prefix)
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError,
            tf.errors.DataLossError):
        damaged = _damaged_file(prefix)
        if damaged:
            raise UserError("--output_dir {}: checkpoint file {} is damaged (truncated, corrupt or "
                            "missing); {}".format(output_dir, damaged, START_OVER.format(output_dir)))
        raise UserError(
            "--output_dir {}: its checkpoint {} does not fit this model (other model flags, or "
            "an older version of this code); use another --output_dir, or --reset_output_dir "
            "to start over".format(output_dir, os.path.basename(prefix)))


def save(sess, saver, output_dir, step):
    """Writes output_dir/model.ckpt-<step>; the previous one goes only once this one is whole.
    A full disk, a quota or an I/O error raises WriteFailed naming the checkpoint."""
    prefix = os.path.join(output_dir, PREFIX)
    try:
        saver.save(sess, prefix, global_step=step, write_meta_graph=False)
    except (tf.errors.OpError, OSError) as e:
        raise WriteFailed("{}-{}".format(prefix, step), cause_of(e))
