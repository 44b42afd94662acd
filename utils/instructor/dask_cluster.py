"""A Dask cluster on loopback started the way a real one is: ``dask scheduler`` and ``dask worker`` processes.

    python -m utils.instructor.dask_cluster start [--workers 2] [--dir DIR]   # prints the scheduler address
    python -m utils.instructor.dask_cluster stop --dir DIR

    scheduler=$(python -m utils.instructor.dask_cluster start --dir /tmp/cluster)
    python -m utils.instructor.parallel deformable_conv --scheduler "$scheduler"
    python -m utils.instructor.dask_cluster stop --dir /tmp/cluster

The parallel grader's ``LocalCluster`` runs its workers inside the grader's own process tree; a class
graded on several machines runs ``dask scheduler`` on one and ``dask worker ADDR --nthreads 1`` on each
of the others. This module starts exactly those command-line programs (the ``dask`` CLI of the
``distributed`` package, as separate OS processes) on 127.0.0.1 with free ports
(utils/instructor/loopback.py), so that an instructor can try ``--scheduler`` on one machine and the
tests can stop a worker in the middle of a batch, as a crash or a lost machine would::

    with loopback_cluster(workers=2) as cluster:
        parallel.grade(root, ["deformable_conv"], scheduler=cluster.scheduler)
        cluster.stop_worker("worker-1")   # SIGKILL: the worker and everything it started

Each worker has one thread (grading changes the process's working directory), no memory limit (the
grading kernels have budgets of their own) and a folder of its own under the cluster's folder, used
as its ``TMPDIR`` and Dask scratch space, so whatever a killed worker leaves behind (its kernels'
folders, the bounded tmpfs mounted on them, the copies of submissions it was grading) is removed
with the cluster. Every program runs in a process group of its own: stopping a worker ends the
nanny, the worker and the grading kernels it started, and nothing else. Every wait is bounded.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .loopback import free_port

STATE_FILE = "cluster.json"   # in the cluster's folder: the scheduler address and each program's process id


class ClusterError(RuntimeError):
    """A program of the cluster did not start, or did not register with the scheduler in time."""


def _dask(*args: str) -> list[str]:
    """The ``dask`` command line of this environment (``python -m dask`` is the same CLI as ``dask``)."""
    return [sys.executable, "-m", "dask", *args]


def _log_tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group ``pid`` leads; False when no process of it is left."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        return False


def _end_groups(pids: list[int], timeout: float) -> None:
    """SIGTERM the process groups ``pids`` lead, all at once; SIGKILL those still running after ``timeout`` s."""
    left = [pid for pid in pids if _signal_group(pid, signal.SIGTERM)]
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [pid for pid in left if _signal_group(pid, 0)]
    for pid in left:
        _signal_group(pid, signal.SIGKILL)


def _unmount_under(folder: Path) -> None:
    """Detach the file systems mounted under ``folder`` (a killed worker's kernel tmpfs), deepest first."""
    prefix = str(folder.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        libc.umount2(point.encode(), 2)   # MNT_DETACH


class LoopbackCluster:
    """A scheduler and ``workers`` workers on 127.0.0.1, each a ``dask`` CLI process in its own group.

    ``scheduler`` is the address to give ``parallel.grade(scheduler=...)`` or ``Client``; workers are
    named ``worker-0``, ``worker-1``, ...; :meth:`stop_worker` stops one of them.
    """

    def __init__(self, workers: int = 2, folder: str | os.PathLike | None = None, *, nthreads: int = 1,
                 env: dict[str, str] | None = None, start_timeout: float = 120.0, user: str | None = None):
        self.n_workers = workers
        self.user = user   # run the scheduler and workers as this Unix account (e.g. a hub's grader account)
        self.nthreads = nthreads
        self.start_timeout = start_timeout
        self.own_folder = folder is None
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="course-dask-"))
        self.env = dict(os.environ, **(env or {}))
        # the grading kernels and bubblewrap are found next to this interpreter, as in the tests
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env.get("PATH", "")
        if user:
            self.env.update(HOME=f"/home/{user}", USER=user, LOGNAME=user)
        self.scheduler = ""
        self.processes: dict[str, subprocess.Popen] = {}
        self.addresses: dict[str, str] = {}   # worker name -> its address at the scheduler
        self.stopped: set[str] = set()        # workers stopped on purpose (stop_worker)

    # ------------------------------------------------------------------ lifecycle
    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.folder / f"{name}.log", "ab")
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        with log:   # the child keeps its own descriptor
            self.processes[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                    cwd=self.folder, env=env, start_new_session=True)

    def start(self) -> LoopbackCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user:
            shutil.chown(self.folder, self.user)
        port = free_port()
        self.scheduler = f"tcp://127.0.0.1:{port}"
        self._spawn("scheduler", _dask("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                                       "--no-show"), self.env)
        for i in range(self.n_workers):
            name = f"worker-{i}"
            own = self.folder / name
            (own / "tmp").mkdir(parents=True, exist_ok=True)
            if self.user:
                for path in (own, own / "tmp"):
                    shutil.chown(path, self.user)
            self._spawn(name, _dask("worker", self.scheduler, "--name", name, "--host", "127.0.0.1",
                                    "--nthreads", str(self.nthreads), "--nworkers", "1", "--memory-limit", "0",
                                    "--no-dashboard", "--local-directory", str(own), "--death-timeout", "60"),
                        dict(self.env, TMPDIR=str(own / "tmp")))
        self._write_state()
        self.wait_for_workers(self.n_workers)
        return self

    def wait_for_workers(self, n: int) -> dict[str, str]:
        """Wait until ``n`` workers are registered; returns worker name -> address. Raises ClusterError."""
        from distributed import Client
        deadline = time.monotonic() + self.start_timeout
        client = None
        try:
            while True:
                for name, proc in self.processes.items():
                    if name not in self.stopped and proc.poll() is not None:
                        raise ClusterError(f"{name} exited with status {proc.returncode} while the cluster "
                                           f"started:\n{_log_tail(self.folder / f'{name}.log')}")
                if client is None:
                    with contextlib.suppress(OSError):   # the scheduler is not listening yet
                        client = Client(self.scheduler, timeout="2s")
                if client is not None:
                    workers = client.scheduler_info(n_workers=-1)["workers"]
                    self.addresses = {info["name"]: address for address, info in workers.items()}
                    if len(self.addresses) >= n:
                        return dict(self.addresses)
                if time.monotonic() > deadline:
                    raise ClusterError(f"{len(self.addresses)} of {n} workers registered with {self.scheduler} "
                                       f"within {self.start_timeout:.0f} s; logs in {self.folder}")
                time.sleep(0.2)
        finally:
            if client is not None:
                client.close()

    def stop_worker(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30.0) -> str:
        """Stop worker ``name`` (its nanny, worker process and grading kernels) with ``sig``; returns its address.

        SIGKILL (the default) is a crash: the worker finishes nothing and tells the scheduler nothing, which
        notices the closed connection and gives the worker's tasks to the others. Waits, at most
        ``timeout`` s, until the process has ended and the scheduler no longer lists the worker.
        """
        from distributed import Client
        proc = self.processes[name]
        address = self.addresses.get(name, "")
        self.stopped.add(name)
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{name} (pid {proc.pid}) still runs {timeout:.0f} s after signal {sig}") from None
        _signal_group(proc.pid, signal.SIGKILL)   # anything of its group that outlived it
        deadline = time.monotonic() + timeout
        with Client(self.scheduler, timeout="10s") as client:
            while address in client.scheduler_info(n_workers=-1)["workers"]:
                if time.monotonic() > deadline:
                    raise ClusterError(f"the scheduler still lists {name} ({address}) {timeout:.0f} s after it ended")
                time.sleep(0.1)
        return address

    def close(self, timeout: float = 15.0) -> None:
        """End every program (workers first), unmount what they left mounted and remove the cluster's folder."""
        for names in ([n for n in self.processes if n != "scheduler"], ["scheduler"]):
            _end_groups([self.processes[n].pid for n in names if n in self.processes], timeout)
            for name in names:
                with contextlib.suppress(subprocess.TimeoutExpired, KeyError):
                    self.processes[name].wait(timeout)
        if self.folder.exists():
            _unmount_under(self.folder)
            if self.own_folder:
                shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the command line's state
    def _write_state(self) -> None:
        state = {"scheduler": self.scheduler, "pids": {n: p.pid for n, p in self.processes.items()}}
        (self.folder / STATE_FILE).write_text(json.dumps(state, indent=1))


@contextlib.contextmanager
def loopback_cluster(workers: int = 2, folder: str | os.PathLike | None = None, **kwargs) -> Iterator[LoopbackCluster]:
    """``with loopback_cluster(2) as cluster:`` a started :class:`LoopbackCluster`, torn down on exit."""
    with LoopbackCluster(workers, folder, **kwargs) as cluster:
        yield cluster


def stop_folder(folder: Path, timeout: float = 15.0) -> list[str]:
    """End the programs a ``start`` recorded in ``folder``; returns the names of those still running then."""
    state = json.loads((folder / STATE_FILE).read_text())
    running = {}
    for name, pid in state["pids"].items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue   # already gone
        if b"dask" in cmdline:   # else the id now belongs to another program
            running[name] = pid
    ended = sorted(running, key=lambda name: name == "scheduler")
    _end_groups([pid for name, pid in running.items() if name != "scheduler"], timeout)
    _end_groups([pid for name, pid in running.items() if name == "scheduler"], timeout)
    _unmount_under(folder)
    (folder / STATE_FILE).unlink()
    return ended


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.dask_cluster",
                                     description="Start or stop `dask scheduler` and `dask worker` on 127.0.0.1.")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--workers", type=int, default=2, help="start: number of workers (default 2)")
    parser.add_argument("--dir", default=None, help="the cluster's folder (start: default a new temporary folder)")
    args = parser.parse_args(argv)
    if args.action == "stop":
        if not args.dir or not (Path(args.dir) / STATE_FILE).is_file():
            parser.error(f"stop needs the --dir of a started cluster (a folder with {STATE_FILE})")
        ended = stop_folder(Path(args.dir))
        print(f"stopped {', '.join(ended) or 'nothing (no program was still running)'}", file=sys.stderr)
        return 0
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="course-dask-"))
    cluster = LoopbackCluster(args.workers, folder)
    try:
        cluster.start()
    except ClusterError as why:
        cluster.close()
        print(why, file=sys.stderr)
        return 1
    print(cluster.scheduler)
    print(f"# {args.workers} workers registered; logs in {folder}; stop with: "
          f"python -m utils.instructor.dask_cluster stop --dir {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
