"""Stops a test's run at a line it prints, so that the test signals it there and not wherever
it got to: with this folder on PYTHONPATH and ENAS_TEST_STOP_AT set to a regex, a Python
process sends itself SIGSTOP right after writing the first stdout line that matches it (the
test then waits for the stopped state, sends its signal and SIGCONT). The fork server of
test_reliability.py calls install() itself."""
import os
import re
import signal
import sys


class StopAt(object):
    """A stdout wrapper: writes through, and stops the process after the first matching line."""

    def __init__(self, stream, pattern):
        self.stream, self.pattern, self.line = stream, re.compile(pattern), ""

    def write(self, text):
        n = self.stream.write(text)
        self.line += text
        while self.pattern is not None and "\n" in self.line:
            line, self.line = self.line.split("\n", 1)
            if self.pattern.search(line):
                self.pattern = None
                self.stream.flush()
                os.kill(os.getpid(), signal.SIGSTOP)
        return n

    def __getattr__(self, name):
        return getattr(self.stream, name)


def install(pattern):
    sys.stdout = StopAt(sys.stdout, pattern)


def is_stopped(pid):
    """Whether process pid is stopped (by a signal)."""
    with open("/proc/{}/stat".format(pid)) as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


if os.environ.get("ENAS_TEST_STOP_AT"):
    install(os.environ["ENAS_TEST_STOP_AT"])
