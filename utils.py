"""The process around TensorFlow: its quiet import, the GPU probe, and the stdout log.

API
  import_tensorflow_quietly()      run on import: TensorFlow's C++ start-up lines never reach stderr
                                   (import utils first; it also picks TensorFlow's CPU allocator)
  probe_devices_quietly()          look for GPUs once without the expected cuInit error line
  Logger                           tee of stdout into a file (append mode)
"""
import contextlib
import os
import sys

from errors import writing

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of logs
# CPU tensors from TensorFlow's best-fit-with-coalescing allocator instead of malloc: glibc kept
# the freed activations of a step in fragmented heaps (ENGINEERING.md). Read once, when
# the CPU device is made: here, before TensorFlow is imported.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


@contextlib.contextmanager
def _stderr_closed():
    """File descriptor 2 goes to /dev/null inside the block (C++ writes it directly)."""
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


def import_tensorflow_quietly():
    """Imports TensorFlow with stderr closed: its C++ start-up lines (oneDNN, CUDA stubs) ignore
    TF_CPP_MIN_LOG_LEVEL and would bury a one-line error about bad input. Importing utils first
    (as the scripts do) is enough."""
    with _stderr_closed():
        import tensorflow.compat.v1  # noqa: F401


import_tensorflow_quietly()


def probe_devices_quietly():
    """On a machine without an NVIDIA driver, looks for GPUs once with stderr closed, so that the
    CUDA platform's expected "failed call to cuInit" error line is not printed by the first
    session; where a driver exists, GPU start-up errors are real and stay visible. Call it once
    per process before the first session (it starts TensorFlow's device threads, so not at
    import: a process that forks after importing would hang). It uses device_lib, not tf.config,
    whose eager context names devices /job:localhost and so breaks a cluster's placement."""
    if os.path.exists("/dev/nvidiactl"):
        return
    with _stderr_closed():
        from tensorflow.python.client import device_lib
        device_lib.list_local_devices()


class Logger(object):
    """Writes everything printed to the terminal and appends it to `path`."""

    def __init__(self, path):
        self.terminal = sys.stdout
        self.path = path
        self.line_open = False  # the last write did not end its line
        with writing(path):
            self.log = open(path, "a")

    def write(self, message):
        self.terminal.write(message)
        self.terminal.flush()
        with writing(self.path):
            self.log.write(message)
            self.log.flush()
        if message:
            self.line_open = not message.endswith("\n")

    def end_line(self):
        """Ends a line whose newline a signal kept print() from writing (print writes the text
        and the newline separately)."""
        if self.line_open:
            self.write("\n")

    def flush(self):
        self.terminal.flush()
        with writing(self.path):
            self.log.flush()
