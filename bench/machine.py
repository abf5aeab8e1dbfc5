"""What machine a benchmark figure comes from (no TensorFlow import).

cpu_model() -> "AMD EPYC ... (family 26, model 2), 2 logical cores", from /proc/cpuinfo: its model
name alone can be as vague as "AMD EPYC", which spans several generations.
"""
import os
import platform
import re


def cpu_model():
    """/proc/cpuinfo's model name, family and model, and the logical core count."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "{}, {} logical cores".format(platform.processor() or "unknown CPU", os.cpu_count())
    field = lambda name: (re.findall(r"^{}\s*:\s*(.*)$".format(name), info, re.M) or ["?"])[0]  # noqa: E731
    return "{} (family {}, model {}), {} logical cores".format(
        field("model name"), field("cpu family"), field("model"), os.cpu_count())
