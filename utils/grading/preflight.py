"""Preflight: before a batch, check that a grading kernel imports the check package this grader uses.

Why: a grading kernel that cannot import ``utils`` (or imports another copy of it) does not fail
loudly. Every test cell's recording call fails, every verdict reads "this test did not run to the
end", every student gets 0, and nbgrader exits 0. That happened with a course folder whose
environment was installed from another checkout. This check stops the batch before any student is
graded, and says why.

What it does, once per notebook of the assignment: it runs a short probe in the same sandbox a
grading kernel gets. That means the same interpreter (the notebook's kernelspec, as jupyter_client
resolves it), the same environment, bubblewrap options, limits and blocked libraries
(:func:`~utils.grading.sandbox.bwrap_command`), and an empty working folder. The probe imports
``utils``, the registry, the recorder the test cells call, the notebook's check modules and the
libraries its locked cells import (:func:`~utils.grading.zygote.preload_modules`). It prints where
each one came from, and its version, as JSON. The probe also tries the libraries the notebook may
not use, which must fail to import. The grader then compares: ``utils`` must be the very file this
grader imported (resolved), every ``utils.*`` module and library the very file this grader would
import. Any mismatch or import failure raises :class:`PreflightError`. Its message says what the
kernel imported, what the grader uses, and what to do.

The probe runs ``python -c`` without ``-I``, as the kernel runs: ``-I`` would ignore the PYTHONPATH
the sandbox gives the kernel (:func:`~utils.grading.sandbox.kernel_env`), so the probe would not
see what the kernel sees.

:class:`~utils.grading.batch_report.ReportingAutograde` runs it for ``nbgrader autograde`` and
the formgrader. The parallel grader runs it in its coordinating process before any shard starts.
A check that passed is remembered per process for the same notebook and sandbox settings.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbgrader.converters import NbGraderException

from utils.checks.registry import CHECK_MODULES
from utils.grading.sandbox import SandboxSettings, bwrap_command
from utils.grading.zygote import preload_modules

MIB = 2**20
MARKER = "COURSE-PREFLIGHT "   # the probe's report line, apart from whatever the imports print
# What every grading kernel imports, whatever the notebook: the package, its registry, the recorder.
GRADING_MODULES = ("utils", "utils.checks.registry", "utils.grading.in_kernel.recording")

# Run as ``python -c PROBE MODULE... -- BLOCKED...`` inside the sandbox: standard library only.
PROBE = r"""
import importlib, json, sys
args = sys.argv[1:]
split = args.index("--")
report = {"python": sys.executable, "sys_path": sys.path, "modules": {}, "blocked": {}}
for name in args[:split]:
    try:
        module = importlib.import_module(name)
    except BaseException as exc:
        report["modules"][name] = {"error": type(exc).__name__ + ": " + str(exc)}
        continue
    top = sys.modules.get(name.split(".")[0])
    report["modules"][name] = {"file": getattr(module, "__file__", None),
                               "top_file": getattr(top, "__file__", None),
                               "version": str(getattr(top, "__version__", ""))}
for name in args[split + 1:]:
    try:
        module = importlib.import_module(name)
    except BaseException as exc:
        report["blocked"][name] = {"error": type(exc).__name__ + ": " + str(exc)}
    else:
        report["blocked"][name] = {"file": getattr(module, "__file__", None)}
print("COURSE-PREFLIGHT " + json.dumps(report), flush=True)
"""


class PreflightError(NbGraderException):
    """The grading kernel would not import what the grader uses: no student may be graded."""


@dataclass(frozen=True)
class Probe:
    """One notebook's probe: what it imports and the sandbox it runs in (the cache key)."""

    notebook: str                   # "<assignment>/<notebook>"
    python: str                     # the kernel's interpreter
    modules: tuple[str, ...]        # must import, from the same files as in the grader
    blocked: tuple[str, ...]        # must not import (from-scratch notebooks)
    sandboxed: bool
    bwrap: str = ""
    cpu_seconds: int = 0
    data_bytes: int = 0
    file_bytes: int = 0
    tmp_bytes: int = 0
    env: tuple[tuple[str, str], ...] = ()   # the kernelspec's own environment variables


@dataclass
class PreflightResult:
    notebook: str
    seconds: float
    modules: dict[str, dict] = field(default_factory=dict)   # what the kernel imported, and from where


_PASSED: dict[Probe, PreflightResult] = {}


def kernel_python(nb, kernel_name: str = "") -> tuple[str, dict[str, str]]:
    """The interpreter and extra environment of the notebook's kernel, as jupyter_client starts it."""
    name = kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise PreflightError(f"Preflight: the notebooks ask for the kernel {name!r}, which is not installed "
                             f"(`jupyter kernelspec list`); no student was graded.") from None
    python = spec.argv[0] if spec.argv else sys.executable
    # jupyter_client's own rule: a kernelspec that says "python" runs this interpreter
    if python in {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}:
        python = sys.executable
    return python, dict(spec.env or {})


def probe_modules(nb, notebook_key: str, blocked: list[str]) -> list[str]:
    """What the notebook's grading kernel imports: the grading modules, its checks, its locked imports."""
    checks = [module for module, entry in CHECK_MODULES.items() if entry.notebook == notebook_key]
    wanted = list(GRADING_MODULES) + checks + preload_modules(nb, blocked)
    return list(dict.fromkeys(wanted))


def make_probe(nb, notebook_key: str, execute=None) -> Probe:
    """The probe of one notebook; ``execute`` is the configured SandboxedExecute, None for a plain kernel."""
    sandboxed = bool(execute is not None and execute.sandbox)
    blocked = list(execute.from_scratch.get(notebook_key, [])) if execute is not None else []
    python, env = kernel_python(nb, getattr(execute, "kernel_name", "") if execute is not None else "")
    probe = Probe(notebook=notebook_key, python=python, modules=tuple(probe_modules(nb, notebook_key, blocked)),
                  blocked=tuple(blocked), sandboxed=sandboxed, env=tuple(sorted(env.items())))
    if not sandboxed:
        return probe
    return replace(probe, bwrap=shutil.which(execute.bwrap) or execute.bwrap, cpu_seconds=execute.cpu_time_limit,
                   data_bytes=execute.memory_limit_mb * MIB, file_bytes=execute.file_size_limit_mb * MIB,
                   tmp_bytes=execute.tmp_size_mb * MIB)


def _settings(probe: Probe, work: str, run: str) -> SandboxSettings:
    """The sandbox of a grading kernel of this notebook, as SandboxedExecute.create_kernel_manager builds it."""
    return SandboxSettings(bwrap=probe.bwrap, student_dir=work, run_dir=run, blocked_modules=list(probe.blocked),
                           notebook=f"{probe.notebook.rpartition('/')[2]}.ipynb", cpu_seconds=probe.cpu_seconds,
                           data_bytes=probe.data_bytes, file_bytes=probe.file_bytes, tmp_bytes=probe.tmp_bytes)


def run_probe(probe: Probe, timeout: float) -> dict:
    """Run the probe as the kernel would run, and return its report."""
    cmd = [probe.python, "-c", PROBE, *probe.modules, "--", *probe.blocked]
    env = dict(os.environ, **dict(probe.env))   # what jupyter_client gives a kernel
    scratch = tempfile.mkdtemp(prefix="course-preflight-")
    try:
        work, run = os.path.join(scratch, "work"), os.path.join(scratch, "run")
        os.mkdir(work)
        os.mkdir(run)
        if probe.sandboxed:
            cmd = bwrap_command(cmd, _settings(probe, work, run))
        try:
            done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PreflightError(_message(probe, f"the grading kernel's imports took longer than {timeout:g} s",
                                          "Check the machine's load, or raise "
                                          "c.ReportingAutograde.preflight_timeout.")) from None
        except OSError as exc:
            raise PreflightError(_message(probe, f"the grading kernel could not be started ({exc})",
                                          "Check that the kernel's interpreter and bubblewrap exist.")) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        output = (done.stderr.strip() or done.stdout.strip() or "no output")[-1500:]
        raise PreflightError(_message(
            probe, f"the grading kernel did not start (exit status {done.returncode}):\n    "
                   + output.replace("\n", "\n    "),
            "Grading needs bubblewrap and unprivileged user namespaces (README, \"How grading stays honest\") "
            "and the kernel's interpreter; fix what the output above names."))
    return json.loads(lines[-1][len(MARKER):])


def grader_origin(name: str) -> Path | None:
    """The file this grader imports for ``name`` (imported or not), resolved."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if path is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        path = spec.origin if spec is not None else None
    return Path(path).resolve() if path and os.path.exists(path) else None


def _same(kernel_file: str | None, grader_file: Path | None) -> bool:
    if kernel_file is None or grader_file is None:
        return kernel_file is None and grader_file is None   # built into the interpreter, on both sides
    return Path(kernel_file).resolve() == grader_file


def installed_from() -> str:
    """The folder the environment's course package was installed from (an editable install), or ""."""
    for dist in importlib.metadata.packages_distributions().get("utils", []):
        try:
            url = json.loads(importlib.metadata.distribution(dist).read_text("direct_url.json") or "{}").get("url", "")
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
        if url.startswith("file://"):
            return url[len("file://"):]
    return ""


def _fix_for_utils() -> str:
    grader = grader_origin("utils")
    folder = grader.parent.parent if grader else Path.cwd()
    source = installed_from()
    return (f"install this course folder into the environment the kernel runs (`{sys.executable} -m pip install "
            f"-e {folder}`), or run nbgrader from the folder the environment was installed from"
            + (f" ({source})" if source else "") + ".")


def _message(probe: Probe, problem: str, fix: str, details: list[str] = ()) -> str:
    where = "in its bubblewrap sandbox" if probe.sandboxed else "(no sandbox)"
    lines = [f"Preflight failed for {probe.notebook}.ipynb: {problem}.", *[f"  {d}" for d in details],
             f"  the kernel's interpreter: {probe.python} {where}",
             "Grading now would give every student 0 (\"this test did not run to the end\") or a verdict from "
             "checks this grader does not use, so no student was graded.", f"What to do: {fix}"]
    return "\n".join(lines)


def compare(probe: Probe, report: dict) -> None:
    """Raise PreflightError unless the kernel imported every module from the grader's own files."""
    grader_utils = grader_origin("utils")
    modules = report.get("modules", {})
    for name in probe.modules:
        seen = modules.get(name, {"error": "the probe did not report it"})
        ours = name == "utils" or name.startswith("utils.")
        if "error" in seen:
            if ours:
                raise PreflightError(_message(
                    probe, f"the grading kernel could not import {name} ({seen['error']})", _fix_for_utils(),
                    [f"this grader uses utils from:  {grader_utils}",
                     f"the kernel's sys.path:       {report.get('sys_path')}"]))
            raise PreflightError(_message(
                probe, f"the grading kernel could not import {name} ({seen['error']}), which the notebook imports",
                f"install it into the environment of {probe.python} (this grader finds it at "
                f"{grader_origin(name.split('.')[0]) or 'no location'}).",
                [f"the kernel's sys.path: {report.get('sys_path')}"]))
        name_checked = name if ours else name.split(".")[0]
        kernel_file = seen["file"] if ours else seen.get("top_file")
        grader_file = grader_origin(name_checked)
        if not _same(kernel_file, grader_file):
            what = "the check package" if ours else "a library the notebook imports"
            raise PreflightError(_message(
                probe, f"the grading kernel imports {name_checked} ({what}) from another place than this grader",
                _fix_for_utils() if ours else f"make {probe.python} and this grader use one environment.",
                [f"the kernel imported {name_checked} from:  {kernel_file}",
                 f"this grader uses {name_checked} from:     {grader_file}"]))
    for name, seen in report.get("blocked", {}).items():
        if "error" not in seen:
            raise PreflightError(_message(
                probe, f"the grading kernel could import {name} from {seen.get('file')}, which this notebook "
                       "is graded without (c.SandboxedExecute.from_scratch)",
                "check the sandbox (utils/grading/sandbox.py); grading must not go on without it."))


def check(probe: Probe, timeout: float = 180.0) -> PreflightResult:
    """Run (or recall) one notebook's probe; raise PreflightError when its kernel would not grade."""
    if probe in _PASSED:
        return _PASSED[probe]
    start = time.perf_counter()
    report = run_probe(probe, timeout)
    compare(probe, report)
    result = PreflightResult(probe.notebook, time.perf_counter() - start, report.get("modules", {}))
    _PASSED[probe] = result
    return result


def assignment_notebooks(coursedir, assignment: str) -> list[Path]:
    """The assignment's notebooks as the instructor wrote them (source/, else release/)."""
    for folder in (coursedir.source_directory, coursedir.release_directory):
        found = sorted(Path(coursedir.format_path(folder, ".", assignment)).glob("*.ipynb"))
        if found:
            return found
    return []


def check_assignments(coursedir, assignments: list[str], execute=None, timeout: float = 180.0, log=None
                      ) -> list[PreflightResult]:
    """Check every notebook of ``assignments``; raise PreflightError for the first one that would not grade.

    The probes run side by side (one process each, as many at once as there are CPUs).
    """
    probes = []
    for assignment in assignments:
        notebooks = assignment_notebooks(coursedir, assignment)
        if not notebooks and log is not None:
            log.warning("Preflight: no notebooks of %s in source/ or release/: nothing checked.", assignment)
        for path in notebooks:
            probes.append(make_probe(nbformat.read(path, as_version=4), f"{assignment}/{path.stem}", execute))
    with ThreadPoolExecutor(max_workers=max(1, min(len(probes), os.cpu_count() or 1))) as pool:
        futures = [pool.submit(check, probe, timeout) for probe in probes]
        results = [future.result() for future in futures]   # the first failure, in notebook order
    if log is not None:
        for result in results:
            versions = ", ".join(f"{name} {seen['version']}" for name, seen in result.modules.items()
                                 if "." not in name and seen.get("version"))
            log.info("Preflight %s.ipynb: the grading kernel imports utils from %s, as this grader%s (%.1f s).",
                     result.notebook, result.modules.get("utils", {}).get("file"),
                     f"; {versions}" if versions else "", result.seconds)
    return results
