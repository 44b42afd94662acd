"""Inside the grading sandbox: apply the resource limits, then exec the kernel.

    python -I sandbox_launch.py --cpu SECONDS --data BYTES --fsize BYTES -- KERNEL_CMD...

Standard library only, run by path with ``-I``: every grading kernel pays this start-up, so it
imports nothing it does not need, and nothing of the course package.
"""
import os
import resource
import sys


def apply_limits(cpu_seconds: int, data_bytes: int, file_bytes: int) -> None:
    """CPU time (SIGXCPU, then SIGKILL 5 s later), heap, file size; no core dumps."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_DATA, (data_bytes, data_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def launch(argv: list[str]) -> None:
    split = argv.index("--")
    options = dict(zip(argv[:split:2], argv[1:split:2], strict=True))
    apply_limits(int(options["--cpu"]), int(options["--data"]), int(options["--fsize"]))
    cmd = argv[split + 1:]
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    launch(sys.argv[1:])
