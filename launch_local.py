"""Starts a local cluster for a data-parallel search or retraining and runs it to the end.

    python launch_local.py --search --num_workers 2 -- [main_controller_child_trainer.py flags]
    python launch_local.py --num_workers 2 -- --child_fixed_arc "1 2 1 3 ..." [main_child_trainer.py flags]

Starts --num_ps parameter servers and --num_workers workers of the trainer on free
127.0.0.1 ports, passes the chief's (worker 0's) output through, writes the other tasks' output to
log files (their folder is printed first), and when the chief ends stops every process it started and
exits with the chief's status. Ctrl-C reaches the chief, which saves a checkpoint as usual.

Off the network: TensorFlow's gRPC servers listen on every interface whatever host the cluster
names, and accept any request (they run any op, file reads and writes included). So on Linux the
launcher first re-runs itself, and so every task, in a private user + network namespace
(`unshare --user --map-root-user --net`) whose only interface is loopback: no port of the cluster
can be reached from another machine, or from outside that namespace. Where the system does not
allow that, it says so in one line and goes on unprotected.
"""
import argparse
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
TRAINERS = {False: os.path.join(ROOT, "main_child_trainer.py"),
            True: os.path.join(ROOT, "main_controller_child_trainer.py")}  # by --search
CLUSTER_FLAGS = ("--job_name", "--task_index", "--ps_hosts", "--worker_hosts")
WORKER_GRACE_SECS = 30  # time the other workers get to finish their last step after the chief
INSIDE_ENV = "ENAS_LAUNCH_LOCAL_NETNS"  # set in the re-run inside the private network namespace
UNSHARE = ["--user", "--map-root-user", "--net"]


def usage_error(message):
    """Bad launcher flags: one line and exit status 2, like the trainers."""
    print("error: " + message, file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                usage="%(prog)s [--search] [--num_workers N] [--num_ps M] -- <trainer flags>")
    p.add_argument("--search", action="store_true",
                   help="run the search (main_controller_child_trainer.py), not a retraining")
    p.add_argument("--num_workers", type=int, default=2, help="worker processes; worker 0 is the chief")
    p.add_argument("--num_ps", type=int, default=1, help="parameter server processes")
    p.add_argument("trainer_flags", nargs=argparse.REMAINDER, help="flags for the trainer, after --")
    p.error = usage_error
    args = p.parse_args(argv)
    if args.trainer_flags[:1] == ["--"]:
        args.trainer_flags = args.trainer_flags[1:]
    if args.num_workers < 1 or args.num_ps < 1:
        p.error("--num_workers and --num_ps must be >= 1")
    given = [f for f in args.trainer_flags if f.split("=")[0] in CLUSTER_FLAGS]
    if given:
        p.error("{} is set by the launcher; leave it out".format(given[0].split("=")[0]))
    return args


def free_ports(count):
    """count distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_tasks(args, log_dir, tasks):
    """Starts every ps and worker, appending (name, Popen) to tasks as it goes; returns the chief's
    Popen. The chief inherits the launcher's stdout and stderr; the others write to log_dir."""
    ports = free_ports(args.num_ps + args.num_workers)
    hosts = ["127.0.0.1:{}".format(p) for p in ports]
    ps_hosts, worker_hosts = ",".join(hosts[:args.num_ps]), ",".join(hosts[args.num_ps:])
    chief = None
    for job, count in (("ps", args.num_ps), ("worker", args.num_workers)):
        for index in range(count):
            cmd = [sys.executable, TRAINERS[args.search]] + args.trainer_flags + [
                "--job_name", job, "--task_index", str(index), "--ps_hosts", ps_hosts,
                "--worker_hosts", worker_hosts]
            name = "{}{}".format(job, index)
            if job == "worker" and index == 0:
                proc = chief = subprocess.Popen(cmd)
            else:
                log = open(os.path.join(log_dir, name + ".log"), "w")
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                log.close()
            print("launch_local: started {} (pid {})".format(name, proc.pid), file=sys.stderr, flush=True)
            tasks.append((name, proc))
    return chief


def wait_for_chief(chief):
    """Waits for the chief; a Ctrl-C only reaches the chief (which saves a checkpoint and exits)."""
    while True:
        try:
            return chief.wait()
        except KeyboardInterrupt:
            chief.send_signal(signal.SIGINT)


def stop_all(tasks, chief_status):
    """After a chief that succeeded, gives the other workers WORKER_GRACE_SECS to finish their last
    step; then stops every task still running (SIGTERM, SIGKILL after 10 s)."""
    deadline = time.time() + (WORKER_GRACE_SECS if chief_status == 0 else 0)
    for name, proc in tasks:
        if name.startswith("worker"):
            try:
                proc.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
    for _, proc in tasks:
        if proc.poll() is None:
            proc.terminate()
    for _, proc in tasks:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def report_failed_workers(exit_codes, log_dir):
    """Names every worker (besides the chief) that failed before the launcher stopped the cluster."""
    for name, code in exit_codes.items():
        if name.startswith("worker") and name != "worker0" and code not in (0, None, 130):
            print("launch_local: {} exited with status {}; see {}".format(
                name, code, os.path.join(log_dir, name + ".log")), file=sys.stderr)


def isolate(argv):
    """Re-runs this launcher with argv in a new user + network namespace (exec: same process,
    same pid, same terminal), or returns why it cannot. Returns None inside that namespace."""
    if os.environ.get(INSIDE_ENV):
        loopback_up()
        print("launch_local: the cluster runs in a private network namespace: its ports are on "
              "loopback only", file=sys.stderr, flush=True)
        return None
    unshare = shutil.which("unshare") if sys.platform.startswith("linux") else None
    if not unshare:
        return "no unshare command (Linux util-linux)"
    probe = subprocess.run([unshare] + UNSHARE + ["true"], capture_output=True, text=True)
    if probe.returncode:
        return (probe.stderr.strip().splitlines() or ["unshare failed"])[-1]
    sys.stdout.flush()
    os.execve(unshare, [unshare] + UNSHARE + [sys.executable, os.path.abspath(__file__)] + argv,
              dict(os.environ, **{INSIDE_ENV: "1"}))


def loopback_up():
    """Brings up `lo`, which a new network namespace starts with down (ioctl SIOCSIFFLAGS, as
    `ip link set lo up` does, without needing iproute2)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, siocgifflags, request))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    why_not = isolate(argv)
    if why_not:
        print("launch_local: cannot start the cluster in a private network namespace ({}); its "
              "ports listen on every interface: run it only on a trusted network".format(why_not),
              file=sys.stderr, flush=True)
    log_dir = tempfile.mkdtemp(prefix="enas_cluster_")
    print("launch_local: logs of the tasks other than the chief are in {}".format(log_dir),
          file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tasks, status = [], 1
    try:
        chief = start_tasks(args, log_dir, tasks)
        status = wait_for_chief(chief)
    finally:
        exit_codes = {name: proc.poll() for name, proc in tasks}
        stop_all(tasks, status)
    report_failed_workers(exit_codes, log_dir)
    return status


if __name__ == "__main__":
    sys.exit(main())
