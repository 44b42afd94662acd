"""The kernel manager of a sandboxed grading kernel: started by bubblewrap, or forked by a warm zygote.

:class:`~utils.grading.preprocessors.SandboxedExecute` gives each notebook's manager its
:class:`~utils.grading.sandbox.SandboxSettings` and, with warm kernels, the zygote to fork from.
"""
from __future__ import annotations

import os
import shutil
import sys

from jupyter_client.manager import AsyncKernelManager

from utils.grading import cgroups
from utils.grading.sandbox import SandboxSettings, bwrap_command
from utils.grading.zygote import KernelZygote, ZygoteError


def ipykernel_arguments(cmd: list[str]) -> list[str] | None:
    """The arguments of ``<python> -m ipykernel_launcher ARGS`` (this interpreter), else None."""
    if len(cmd) >= 3 and cmd[1:3] == ["-m", "ipykernel_launcher"] and \
            os.path.realpath(shutil.which(cmd[0]) or cmd[0]) == os.path.realpath(sys.executable):
        return cmd[3:]
    return None


class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel inside bubblewrap, as ``sandbox`` says, in the control group ``cgroup``.

    With a ``zygote`` (warm kernels), the kernel is forked by it instead of started by bwrap (it is
    then in the zygote's group); ``zygote`` is set to None again when the kernel had to be started
    by bwrap after all.
    """

    sandbox: SandboxSettings | None = None
    zygote: KernelZygote | None = None
    cgroup: cgroups.KernelCgroup | None = None

    def _sandboxed(self, cmd: list[str]) -> list[str]:
        return cgroups.wrap_command(bwrap_command(cmd, self.sandbox), self.cgroup)

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if self.sandbox is None:
            return cmd
        if self.zygote is not None and ipykernel_arguments(cmd) is not None:
            return cmd
        self.zygote = None
        return self._sandboxed(cmd)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.sandbox is not None:
            kw["cwd"] = self.sandbox.student_dir
        if self.zygote is None:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        sandbox = self.sandbox
        try:
            process = self.zygote.spawn(
                ipykernel_arguments(kernel_cmd), env=kw.get("env") or dict(os.environ), cwd=sandbox.student_dir,
                keep=[sandbox.student_dir, sandbox.run_dir], limits=sandbox.limits())
        except ZygoteError as exc:
            self.log.warning("Warm kernel failed to start (%s); starting a new kernel.", exc)
            self.zygote = None
            return await super()._async_launch_kernel(self._sandboxed(kernel_cmd), **kw)
        provisioner = self.provisioner
        provisioner.process, provisioner.pid, provisioner.pgid = process, process.pid, None
        provisioner.cwd = sandbox.student_dir
        self._reconcile_connection_info(provisioner.connection_info)
