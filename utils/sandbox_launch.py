"""Inside the grading sandbox: apply the resource limits, then exec the kernel.

    python -I sandbox_launch.py --cpu SECONDS --data BYTES --fsize BYTES -- KERNEL_CMD...

Standard library only, run by path with ``-I``: every grading kernel pays this start-up, so it
imports nothing it does not need (importing :mod:`utils.sandbox` would pull in nbgrader).
"""
import os
import resource
import sys


def launch(argv: list[str]) -> None:
    split = argv.index("--")
    options = dict(zip(argv[:split:2], argv[1:split:2]))
    cmd = argv[split + 1:]
    cpu = int(options["--cpu"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    data = int(options["--data"])
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    fsize = int(options["--fsize"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    launch(sys.argv[1:])
