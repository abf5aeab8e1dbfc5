"""Exports a retrained fixed-arc child as a TensorFlow SavedModel for serving.

API
  export_from_checkpoint(flags_like, data, fixed_arc, output_dir, export_dir=None, checkpoint=None)
      -> export_dir
    Builds a fresh inference graph, restores the latest checkpoint of output_dir (or `checkpoint`)
    and writes the SavedModel to export_dir (default output_dir/saved_model) and
    labels.txt (class names in index order, one a line) to the parent of export_dir.
    flags_like: any object with the attributes child_num_layers, child_num_cells,
      child_out_filters, child_use_aux_heads (FLAGS or a types.SimpleNamespace); the same values the
      checkpoint was trained with. Other MicroChild settings do not shape inference.
    data: at least {"class_names": [str], "mean": float32 [C], "std": float32 [C],
      "img_size": int, "channel": int} (data_utils.read_data's dict).
    fixed_arc: (normal_arc, reduce_arc) as search_space.parse_arc returns.
    Raises UserError: no checkpoint; export_dir exists and is not a SavedModel this module wrote.
    Raises WriteFailed (e.g. a full disk): the previous export, if any, is left as it was.
    The graph is always NHWC (the weights do not depend on data_format), so a model trained with
    NCHW on a GPU exports to one that serves on a CPU.

Serving signature "serving_default" (also "predict"):
  input  "images": uint8 [N, img_size, img_size, channel] (RGB when channel is 3, as training reads)
  output "probabilities": float32 [N, num_classes]; "classes": int64 [N] (argmax)
Normalisation (x - mean) / std with the training set's per-channel statistics is inside the graph.
"""
import json
import os
import shutil

import numpy as np
import tensorflow.compat.v1 as tf

import checkpoints
import records
import search_space
from micro_child import MicroChild
from errors import UserError, WriteFailed, cause_of

MARKER = "enas_export.json"  # inside export_dir: says this module wrote it (safe to replace)
SIGNATURE = "serving_default"


def _is_ours(path):
    return os.path.isfile(os.path.join(path, MARKER))


def build_inference_graph(flags_like, data, fixed_arc):
    """In the current default graph: -> (images uint8 placeholder, probabilities, classes)."""
    s, c = int(data["img_size"]), int(data["channel"])
    images = tf.placeholder(tf.uint8, [None, s, s, c], name="images")
    mean = tf.constant(np.asarray(data["mean"], np.float32).reshape([c]), name="train_mean")
    std = tf.constant(np.asarray(data["std"], np.float32).reshape([c]), name="train_std")
    x = (tf.cast(images, tf.float32) - mean) / std
    child = MicroChild(num_classes=len(data["class_names"]), num_layers=flags_like.child_num_layers,
                       num_cells=flags_like.child_num_cells, out_filters=flags_like.child_out_filters,
                       use_aux_heads=flags_like.child_use_aux_heads, data_format="NHWC",
                       fixed_arc=(list(fixed_arc[0]), list(fixed_arc[1])))
    logits, _ = child.model(x, is_training=False)
    probabilities = tf.nn.softmax(logits, name="probabilities")
    classes = tf.argmax(logits, axis=1, name="classes")
    return images, probabilities, classes


def _write_saved_model(flags_like, data, fixed_arc, output_dir, checkpoint, tmp_dir):
    """Restores checkpoint into a fresh inference graph and writes the SavedModel and its MARKER
    (the metadata that says this program wrote it) into tmp_dir."""
    graph = tf.Graph()
    with graph.as_default():
        images, probabilities, classes = build_inference_graph(flags_like, data, fixed_arc)
        saver = tf.train.Saver(var_list=tf.global_variables())  # the checkpoint's extra slots are ignored
        with tf.Session(graph=graph) as sess:
            checkpoints.restore(sess, saver, checkpoint, output_dir)
            signature = tf.saved_model.signature_def_utils.predict_signature_def(
                inputs={"images": images},
                outputs={"probabilities": probabilities, "classes": classes})
            builder = tf.saved_model.builder.SavedModelBuilder(tmp_dir)
            builder.add_meta_graph_and_variables(
                sess, [tf.saved_model.tag_constants.SERVING],
                signature_def_map={SIGNATURE: signature, "predict": signature},
                strip_default_attrs=True)
            builder.save()
    meta = {"checkpoint": os.path.basename(checkpoint), "img_size": int(data["img_size"]),
            "channel": int(data["channel"]), "class_names": list(data["class_names"]),
            "mean": [float(v) for v in np.ravel(data["mean"])],
            "std": [float(v) for v in np.ravel(data["std"])],
            "fixed_arc": search_space.arc_to_string(*fixed_arc)}
    with open(os.path.join(tmp_dir, MARKER), "w") as f:
        json.dump(meta, f, indent=1)


def export_from_checkpoint(flags_like, data, fixed_arc, output_dir, export_dir=None, checkpoint=None):
    """See the module docstring. Returns export_dir."""
    export_dir = os.path.abspath(export_dir or os.path.join(output_dir, "saved_model"))
    checkpoint = checkpoint or checkpoints.latest(output_dir)
    if not checkpoint:
        raise UserError("no checkpoint in {} to export; train first".format(output_dir))
    if os.path.exists(export_dir) and not _is_ours(export_dir):
        raise UserError("{} exists and is not a SavedModel this program exported; not overwriting "
                        "it (move it away or pick another folder)".format(export_dir))
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = os.path.join(parent, ".tmp_" + os.path.basename(export_dir))
    old_dir = os.path.join(parent, ".tmp_old_" + os.path.basename(export_dir))
    for d in (tmp_dir, old_dir):
        if os.path.exists(d):
            shutil.rmtree(d)

    try:
        _write_saved_model(flags_like, data, fixed_arc, output_dir, checkpoint, tmp_dir)
    except (tf.errors.OpError, OSError) as e:  # full disk, quota: the previous export stays
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise WriteFailed(export_dir, cause_of(e))
    # swap in: the old export (ours) moves aside, the new one takes its name, the old one goes
    if os.path.exists(export_dir):
        os.rename(export_dir, old_dir)
    os.rename(tmp_dir, export_dir)
    if os.path.exists(old_dir):
        shutil.rmtree(old_dir)
    records.write_atomic(os.path.join(parent, "labels.txt"),
                         "".join("{}\n".format(n) for n in data["class_names"]))
    return export_dir
