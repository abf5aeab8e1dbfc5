"""Cache keys of the benchmarks' runs (bench/search_quality.py, bench/ranking.py): a search or a
retraining is reused only if everything that changes its result is the same: every flag of the
entry script as the run resolves it (the defaults of enas_flags.define_flags filled in, so a
changed default misses too) and the data it reads (each data folder's real path and a cheap
fingerprint: class folder names, file counts and bytes, so new images at the same path miss).

  run_key(mode, argv) -> hex digest for `python main_*.py argv` (mode "search": the search,
                         "final": the retraining); argv without --output_dir, which is no part of it
  key_of(flags, data) -> hex digest of resolved flags {name: value} and data {flag: identity}
  resolved_flags(mode, argv) -> {name: value} of every flag, as the entry script parses argv
  data_identity(path) -> [real path, [[class, files, bytes], ...] or None if absent]

Run as a script (python bench/cache_key.py MODE ARG...), it prints resolved_flags as JSON:
enas_flags defines its flags in absl's one global FLAGS, for one mode per process (ranking.py
parses the search's flags there itself), so each resolution runs in a child process (~0.2 s,
no TensorFlow).
"""
import functools
import hashlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_FLAGS = ("train_data_dir", "val_data_dir", "test_data_dir")
NOT_IN_KEY = ("output_dir", "reset_output_dir")  # where a run goes, not what it computes
# Flags added after runs were cached, at the value that computes what those runs did: left out of
# the key at that value, so the runs made before them are still found.
ADDED_LATER = {"controller_reward_batch_from_epoch": None}


def key_of(flags, data):
    """sha1 hex digest of the resolved flags {name: value} (data folders, NOT_IN_KEY and the
    ADDED_LATER flags at their old behaviour left out) and the data {flag: data_identity}."""
    kept = {name: value for name, value in flags.items() if name not in NOT_IN_KEY + DATA_FLAGS
            and not (name in ADDED_LATER and value == ADDED_LATER[name])}
    return hashlib.sha1(json.dumps([kept, data], sort_keys=True).encode()).hexdigest()


def data_identity(path):
    """[real path, [[class folder, files, bytes], ...]] of a split folder (path relative to the
    repository, where the benchmarks run the scripts); None for the classes if it is absent."""
    path = os.path.realpath(os.path.join(ROOT, path))
    if not os.path.isdir(path):
        return [path, None]
    classes = [e for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")]
    return [path, [[c.name] + _count_files(c.path) for c in sorted(classes, key=lambda e: e.name)]]


def _count_files(folder):
    """[files, bytes] of the visible regular files in folder."""
    sizes = [e.stat().st_size for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
    return [len(sizes), sum(sizes)]


@functools.lru_cache(maxsize=None)
def _resolve(mode, argv):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), mode] + list(argv), cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("error: {} (the flags of a {} run: {})".format(
            (r.stderr.strip().splitlines() or ["?"])[-1], mode, " ".join(argv)))
    return r.stdout


def resolved_flags(mode, argv):
    """{name: value} of every flag of main_*.py in mode ("search" or "final") parsing argv, its
    defaults filled in (in a child process; SystemExit naming the flag for a bad one)."""
    return json.loads(_resolve(mode, tuple(argv)))


def run_key(mode, argv):
    """key_of the flags argv resolves to in mode and the data folders they name."""
    flags = resolved_flags(mode, argv)
    return key_of(dict(flags, mode=mode), {name: data_identity(flags[name]) for name in DATA_FLAGS})


def _print_resolved_flags(mode, argv):
    sys.path.insert(0, ROOT)
    from absl import flags as absl_flags
    import enas_flags
    enas_flags.define_flags(mode)
    try:
        enas_flags.FLAGS(["cache_key"] + argv)
    except absl_flags.Error as e:
        raise SystemExit(str(e))
    print(json.dumps({name: getattr(enas_flags.FLAGS, name) for name in enas_flags.user_flags}))


if __name__ == "__main__":
    _print_resolved_flags(sys.argv[1], sys.argv[2:])
