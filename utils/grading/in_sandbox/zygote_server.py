"""Inside the grading sandbox: a warm process that forks a fresh kernel for each notebook.

    python zygote_server.py CONFIG_JSON        (started by :class:`utils.grading.zygote.KernelZygote`)

A grading kernel spends most of its start-up importing libraries (torch alone takes about 2 s
on a 2-core machine), and nbgrader starts a new kernel for every notebook. This process imports
the notebook's own imports once, then, for each notebook, forks a child that

1. enters private mount, IPC, network, UTS and PID namespaces;
2. hides every folder it was given (the kernel folders of all notebooks), mounts empty ``/tmp``
   and ``/dev/shm``, and binds back only this notebook's working folder and run folder;
3. forks process 1 of the new PID namespace, which mounts a /proc of that namespace only and
   forks the kernel, which
4. drops every capability for good (empty bounding set, no-new-privileges, locked securebits),
   applies the CPU, memory and file-size limits, and runs ``ipykernel_launcher``.

So each notebook gets its own process tree, its own view of the file system and its own /proc, as
a kernel started by bubblewrap does: it cannot see the zygote, its control pipes or any other
kernel, and when the kernel ends, process 1 ends and every process it left behind is killed. The
zygote itself never runs student code, cannot be traced by its children (it is not dumpable), is
the last choice of the OOM killer, and kills anything still running before it forks the next kernel.

Control protocol: one JSON object per line on stdin, one reply per line on stdout.
``{"op": "spawn", ...}`` -> ``{"pid": N}``; ``{"op": "poll", "pid": N}`` -> ``{"returncode": R}``
(``None`` while running, ``-signal`` or the exit status, as ``subprocess.Popen``; a kernel killed
by a signal shows as 128 + the signal, as a shell reports it);
``{"op": "signal", "pid": N, "signal": S}`` -> ``{}``; ``{"op": "reap"}`` -> ``{}`` once every process
but the zygote has ended. Errors come back as ``{"error": "..."}``.
Every request carries an ``"id"`` that its reply repeats.

Standard library only until the preload, which is what the kernels would import anyway.
"""
import ctypes
import importlib
import json
import os
import signal
import sys
import traceback

from sandbox_launch import apply_limits  # run by path: this folder is sys.path[0]

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x04000000, 0x08000000, 0x40000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 28, 38, 47, 4
# SECBIT_NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE and their locks: uid 0
# inside the sandbox gains no capability from exec.
SECUREBITS_LOCKED_DOWN = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _encoded(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(source, target, fstype, flags, data=None) -> None:
    _check(_libc.mount(_encoded(source), _encoded(target), _encoded(fstype), ctypes.c_ulong(flags), _encoded(data)),
           f"mount {target}")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def isolate(keep: list[str], hide: list[str], carry: list[str], mountpoint: str) -> None:
    """A private file-system view: ``hide`` and /tmp emptied, only ``keep`` bound back.

    ``carry`` are the read-only folders (the environment, the course package) that live under
    /tmp: the new, empty /tmp would hide them, so they are bound back as well. ``mountpoint`` is an
    empty folder where the folders to bind back wait meanwhile.
    """
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWPID), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", mountpoint, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    rebind = list(keep) + [path for path in carry if _under(path, "/tmp")]
    for index, folder in enumerate(rebind):
        os.mkdir(f"{mountpoint}/{index}")
        _mount(folder, f"{mountpoint}/{index}", None, MS_BIND | MS_REC)   # read-only mounts stay read-only
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV)
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV)
    for folder in hide:
        if not _under(folder, "/tmp") and os.path.isdir(folder):
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for index, folder in sorted(enumerate(rebind), key=lambda item: item[1].count("/")):
        os.makedirs(folder, exist_ok=True)
        _mount(f"{mountpoint}/{index}", folder, None, MS_BIND | MS_REC)
    _check(_libc.umount2(mountpoint.encode(), MNT_DETACH), f"umount {mountpoint}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_privileges() -> None:
    """No capability now or after any exec: what bubblewrap's ``--cap-drop ALL`` gives a kernel."""
    _check(_libc.prctl(PR_SET_SECUREBITS, ctypes.c_ulong(SECUREBITS_LOCKED_DOWN), 0, 0, 0), "securebits")
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
            break   # EINVAL past the last capability this kernel knows
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _exit_code(status: int) -> int:
    """A wait status as an exit code: the code, or 128 + the signal that ended the process."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _forward_signals(pid: int) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, lambda s, _frame: os.kill(pid, s))


def _become_kernel(request: dict) -> None:
    """In the kernel process: drop every privilege, apply the limits, run ``python -m ipykernel_launcher``."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)
    drop_privileges()
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    limits = request["limits"]
    apply_limits(int(limits["cpu"]), int(limits["data"]), int(limits["fsize"]))
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[0:0] = [os.getcwd()]   # what `python -m` puts first
    import runpy
    sys.argv = ["ipykernel_launcher", *request["argv"]]
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)


def _init(request: dict) -> int:
    """Process 1 of the kernel's own PID namespace: mount its /proc, start the kernel, reap every orphan.

    Returns when the kernel ends; process 1 exiting makes the kernel of the machine kill every
    process left in the namespace, so nothing a kernel started outlives it.
    """
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    kernel = os.fork()
    if kernel == 0:
        _run_child(_become_kernel, request)
    _forward_signals(kernel)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        if pid == kernel:
            return _exit_code(status)


def _run_child(body, *args) -> None:
    """Run ``body`` in a forked child and end the child with its exit code; never return to the caller's loop."""
    try:
        result = body(*args)
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:   # report and end this child only
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _start_kernel(request: dict, control_fds: tuple[int, ...]) -> int:
    """In the process the zygote forked: isolate, then wait for the kernel's own PID namespace to end."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for fd in control_fds:
        os.close(fd)
    null = os.open("/dev/null", os.O_RDONLY)
    if null != 0:
        os.dup2(null, 0)
        os.close(null)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")   # under memory pressure, the kernel's processes are killed, never the zygote
    except PermissionError:   # a grader account (not root) in a user namespace: the memory rlimits still hold
        pass
    isolate(request["keep"], request["hide"], request["carry"], request["mountpoint"])
    init = os.fork()
    if init == 0:
        _run_child(_init, request)
    _forward_signals(init)
    while True:
        try:
            _, status = os.waitpid(init, 0)
            return _exit_code(status)
        except ChildProcessError:
            return 1


def run_kernel(request: dict, control_fds: tuple[int, ...]) -> None:
    """In the forked child: a kernel in its own namespaces (see the module); never returns."""
    _run_child(_start_kernel, request, control_fds)


def _others_alive() -> list[int]:
    me = os.getpid()
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) not in (1, me)]


def reap_leftovers(children: dict) -> None:
    """Kill what earlier kernels left running (daemons, forks) before the next kernel starts."""
    for _ in range(100):
        alive = _others_alive()
        if not alive:
            break
        try:
            os.kill(-1, signal.SIGKILL)   # every process of this sandbox except this one and its init
        except ProcessLookupError:
            pass
        for pid in list(children):
            _poll(children, pid)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass


def _poll(children: dict, pid: int):
    if children.get(pid) is None:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            children[pid] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return children[pid]


def serve(config: dict) -> None:
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)   # children cannot trace or read this process
    if sys.path and os.path.dirname(os.path.abspath(__file__)) == os.path.abspath(sys.path[0] or "."):
        del sys.path[0]
    # ipykernel sets this default when it starts; a library imported here may read it at import.
    # (Each kernel gets its own environment from the spawn request, so this stays here.)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for name in config.get("preload", []):
        try:
            importlib.import_module(name)
        except BaseException:   # the kernel will import it, and fail, itself
            pass
    control_in, control_out = sys.stdin.fileno(), sys.stdout.fileno()
    reader = os.fdopen(os.dup(control_in), "r")
    writer = os.fdopen(os.dup(control_out), "w")
    os.dup2(2, 1)             # only replies go to the control pipe; prints go to stderr
    os.close(control_in)

    def reply(obj):
        writer.write(json.dumps(obj) + "\n")
        writer.flush()

    reply({"ready": True, "pid": os.getpid()})
    children: dict[int, object] = {}
    for line in reader:
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            reply({"id": request_id, **_handle(request, children, (reader.fileno(), writer.fileno()))})
        except Exception as exc:   # a bad request gets an error reply, not a dead zygote
            reply({"id": request_id, "error": f"{type(exc).__name__}: {exc}"})


def _handle(request: dict, children: dict, control_fds: tuple[int, ...]) -> dict:
    op = request["op"]
    if op == "spawn":
        reap_leftovers(children)
        children.clear()
        pid = os.fork()
        if pid == 0:
            run_kernel(request, control_fds)
        children[pid] = None
        return {"pid": pid}
    if op == "poll":
        return {"returncode": _poll(children, int(request["pid"]))}
    if op == "reap":
        reap_leftovers(children)
        return {}
    if op == "signal":
        pid = int(request["pid"])
        if _poll(children, pid) is None:
            os.kill(pid, int(request["signal"]))
        return {}
    return {"error": f"unknown op {op!r}"}


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
