"""The one exception type for bad user input (no TensorFlow needed to raise or catch it)."""


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""
