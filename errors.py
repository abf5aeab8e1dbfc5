"""The run's own exception types and the write guard (no TensorFlow needed to raise or catch them).

  UserError      bad input from the user: one line, exit status 2, no traceback
  NonFiniteLoss  a NaN or Inf loss of the child or the controller: one line, exit status 1
  WriteFailed    a file of the run could not be written (full disk, quota, I/O error): one line
                 naming the file and the cause, exit status 1; what was written before is whole
  writing(path)  context manager turning an OSError inside it into WriteFailed(path)
  cause_of(e)    what went wrong, for WriteFailed: an OSError's strerror, the errno text inside a
                 TensorFlow error's message, else that message's first line
"""
import contextlib
import errno
import os


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""


class NonFiniteLoss(Exception):
    """A NaN or Inf loss: the run stops with exit status 1, the last good checkpoint is kept."""


class WriteFailed(Exception):
    """path could not be written because of cause (e.g. 'No space left on device')."""

    def __init__(self, path, cause):
        super().__init__("cannot write {}: {}".format(path, cause))
        self.path, self.cause = path, cause


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.EACCES)


def cause_of(error):
    """'No space left on device' from an OSError, or from a TensorFlow OpError's many-line
    message (which names it among node names and hints); else that message's first line."""
    if getattr(error, "strerror", None):
        return error.strerror
    text = getattr(error, "message", None) or str(error)
    for code in WRITE_ERRNOS:
        if os.strerror(code) in text:
            return os.strerror(code)
    return (text.strip().splitlines() or [type(error).__name__])[0]


@contextlib.contextmanager
def writing(path):
    """Runs the block; an OSError in it (a write, flush, fsync, rename) becomes WriteFailed(path)."""
    try:
        yield
    except OSError as e:
        raise WriteFailed(path, cause_of(e)) from e
