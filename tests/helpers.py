"""Shared test helpers (importable as `from helpers import ...` once conftest.py ran).

  make_png_dataset(root, ...)        tiny PNG class folders
  data_flags(dirs)                   the three data-folder flags for (train, valid, test) dirs
  user_stderr(stderr)                stderr's lines without TensorFlow's unsuppressible start-up lines
  assert_one_line_error(run, name)   a run that failed with exactly one `error:` line naming `name`
"""
import os
import re

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


# Start-up lines TensorFlow's C++ runtime writes before absl logging is initialised; this TF
# build writes them whatever TF_CPP_MIN_LOG_LEVEL says, so no program can suppress them.
TF_STARTUP_NOISE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]|"
                              r"WARNING: All log messages before absl::InitializeLog\(\)|"
                              r"To enable the following instructions:)")


def data_flags(dirs):
    return ["--train_data_dir", dirs[0], "--val_data_dir", dirs[1], "--test_data_dir", dirs[2]]


def user_stderr(stderr):
    """Non-empty stderr lines without TensorFlow's C++ start-up lines."""
    return [line for line in stderr.splitlines() if line.strip() and not TF_STARTUP_NOISE.match(line)]


def assert_one_line_error(run, must_name, status=2):
    """run (a CompletedProcess) exited with status and printed exactly one line, an `error:` line
    naming must_name (a string or a list of them), and no traceback; returns that line."""
    assert run.returncode == status, (run.returncode, run.stderr[-3000:], run.stdout[-2000:])
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = user_stderr(run.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for name in [must_name] if isinstance(must_name, str) else must_name:
        assert name in lines[0], (name, lines[0])
    return lines[0]
