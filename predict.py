"""Classifies images with an exported model (export.py).

    python predict.py output/final/saved_model IMAGE_OR_FOLDER...

Prints `path<TAB>class<TAB>probability` per image (probability of the predicted class, 4 decimals).
A folder means every image file in it (.png .jpg .jpeg .bmp .tif .tiff .webp), recursively, sorted.
Images are read as training reads them (data_utils.decode_image: grayscale or RGB, resized to the
model's input size, read from the serving signature). Classes come from labels.txt in the
SavedModel's parent folder. Bad input: one line on stderr, exit status 2.
"""
import os
import sys


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
BATCH = 64


class PredictError(Exception):
    """Bad input: printed as one line, exit status 2."""


def list_images(paths):
    """Files named directly, and the image files under named folders (recursive, sorted)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found += [os.path.join(root, n) for n in names
                          if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                raise PredictError("{} holds no image files ({})".format(path, " ".join(IMAGE_EXTENSIONS)))
            files += sorted(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise PredictError("{} does not exist".format(path))
    return files


def read_labels(model_dir):
    path = os.path.join(os.path.dirname(os.path.abspath(model_dir)), "labels.txt")
    try:
        with open(path) as f:
            labels = [line.rstrip("\n") for line in f if line.strip()]
    except OSError:
        raise PredictError("{} not found (export.py writes it next to the SavedModel)".format(path))
    return labels


class Predictor(object):
    """Loads a SavedModel in its own graph and session; .predict(uint8 images) -> probabilities."""

    def __init__(self, model_dir):
        import tensorflow.compat.v1 as tf
        tf.get_logger().setLevel("ERROR")  # deprecation notices of the v1 loader
        if not os.path.isfile(os.path.join(model_dir, "saved_model.pb")):
            raise PredictError("{} is not a SavedModel folder (no saved_model.pb)".format(model_dir))
        self.graph = tf.Graph()
        self.sess = tf.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.saved_model.loader.load(self.sess, [tf.saved_model.tag_constants.SERVING], model_dir)
        sig = meta.signature_def["serving_default"]
        info = sig.inputs["images"]
        dims = [d.size for d in info.tensor_shape.dim]
        self.img_size, self.channel = dims[1], dims[3]
        self.input = self.graph.get_tensor_by_name(info.name)
        self.output = self.graph.get_tensor_by_name(sig.outputs["probabilities"].name)

    def predict(self, images):
        return self.sess.run(self.output, {self.input: images})


def main(argv):
    if len(argv) < 3:
        print("usage: python predict.py SAVED_MODEL_DIR IMAGE_OR_FOLDER...", file=sys.stderr)
        return 2
    model_dir, paths = argv[1], argv[2:]
    try:
        if not os.path.isdir(model_dir):
            raise PredictError("{} does not exist or is not a folder".format(model_dir))
        labels = read_labels(model_dir)
        files = list_images(paths)
        import utils  # imports TensorFlow quietly
        utils.probe_devices_quietly()  # no "failed call to cuInit" line on a CPU-only machine
        import numpy as np
        import data_utils  # its private _decode is exactly training's conversion (no public helper)
        predictor = Predictor(model_dir)
        for start in range(0, len(files), BATCH):
            batch_files = files[start:start + BATCH]
            batch = []
            for path in batch_files:
                img = data_utils.decode_image(path, predictor.channel, predictor.img_size)
                if img is None:
                    raise PredictError("cannot read {} as an image".format(path))
                batch.append(img)
            probs = predictor.predict(np.stack(batch))
            if probs.shape[1] != len(labels):
                raise PredictError("labels.txt has {} classes but the model outputs {}".format(
                    len(labels), probs.shape[1]))
            for path, p in zip(batch_files, probs):
                k = int(np.argmax(p))
                print("{}\t{}\t{:.4f}".format(path, labels[k], float(p[k])))
    except PredictError as e:
        print("error: {}".format(e), file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
