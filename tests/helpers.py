"""Shared test helpers (importable as `from helpers import make_png_dataset` once conftest.py ran)."""
import os

import cv2
import numpy as np


def make_png_dataset(root, num_classes=3, per_class=(8, 2, 2), size=12, channel=1,
                     learnable=True, seed=0):
    """Write tiny PNG class folders root/{train,valid,test}/<k>/<i>.png; return the 3 dirs.

    root: folder (str or pathlib.Path), created if needed.
    num_classes: class folders "0".."num_classes-1" in every split.
    per_class: images per class for (train, valid, test).
    size: images are size x size; channel: 1 writes 8-bit gray, 3 writes BGR colour.
    learnable: class k gets a bright horizontal bar at row band k (mod the bands that fit)
      on a dark noisy background, so a small network separates the classes easily;
      otherwise pure noise.
    Returns (train_dir, valid_dir, test_dir) as strings.
    """
    rng = np.random.default_rng(seed)
    dirs = []
    bands = max(1, size // 2)
    for split, count in zip(("train", "valid", "test"), per_class):
        split_dir = os.path.join(str(root), split)
        for k in range(num_classes):
            folder = os.path.join(split_dir, str(k))
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                img = rng.integers(0, 60, (size, size, channel)).astype(np.uint8)
                if learnable:
                    row = 2 * (k % bands)
                    img[row:row + 2, :, :] = rng.integers(200, 256, (1, 1, channel))
                else:
                    img = rng.integers(0, 256, (size, size, channel)).astype(np.uint8)
                assert cv2.imwrite(os.path.join(folder, "%d.png" % i), img)
        dirs.append(split_dir)
    return tuple(dirs)
