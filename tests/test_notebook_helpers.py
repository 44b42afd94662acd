"""What the student's notebook shows around the checks: the failure block in JupyterLab and the plain
text elsewhere, ``ready()`` in demo cells, ``progress()``, Run All going on past errors, and the
student's JupyterLab configuration (plain ``jupyter lab``, the Assignment List without an exchange).

Kernels are real ipykernels started with and without ``JPY_SESSION_NAME`` (what jupyter_server gives
a notebook's kernel); the browser tests show the same in JupyterLab.
"""
from __future__ import annotations

import json
import linecache
import os
import re
import shutil
import sys
import textwrap

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

from utils.checks.feedback import TEXT_WIDTH, Report, wrapped
from utils.instructor.course import REPO_ROOT
from utils.notebook.progress import progress
from utils.notebook.ready import is_unfinished

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RELEASE_NOTEBOOKS = sorted((REPO_ROOT / "release").glob("*/*.ipynb"))

WRONG_PATCHIFY = """
from utils import check_patchify
def patchify(x, patch_size):
    N, C, H, W = x.shape
    P = patch_size
    # patches in column order: the patch-column axis before the patch-row axis
    return x.reshape(N, C, H // P, P, W // P, P).permute(0, 4, 2, 1, 3, 5).reshape(N, -1, C * P * P)
check_patchify(patchify)
"""
STUB_PATCHIFY = """
from utils import check_patchify
def patchify(x, patch_size):
    # YOUR CODE HERE
    raise NotImplementedError()
check_patchify(patchify)
"""


def run_in_kernel(code: str, frontend: bool) -> list[dict]:
    """The iopub outputs of ``code`` in a fresh ipykernel (a notebook frontend's kernel or not)."""
    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    if frontend:
        env["JPY_SESSION_NAME"] = "vit.ipynb"
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(REPO_ROOT))
    outputs = []
    try:
        msg_id = kc.execute(code)
        while True:
            msg = kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            if msg["msg_type"] in ("display_data", "execute_result", "error", "stream"):
                outputs.append({"type": msg["msg_type"], **msg["content"]})
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return outputs


@pytest.fixture(scope="module")
def frontend_failure():
    return run_in_kernel(WRONG_PATCHIFY, frontend=True)


def test_a_failure_in_jupyterlab_is_an_html_block_and_one_line_of_error(frontend_failure):
    shown = [o for o in frontend_failure if o["type"] == "display_data"]
    errors = [o for o in frontend_failure if o["type"] == "error"]
    assert len(shown) == 1 and len(errors) == 1, frontend_failure
    block = shown[0]["data"]["text/html"]
    assert 'class="course-check course-check-fail"' in block
    for label in ("Case", "Where", "Hint"):
        assert f">{label}</th>" in block, label
    assert "word-break:normal" in block and "break-all" not in block
    assert shown[0]["data"]["text/plain"].startswith("✗ patchify")      # for viewers without HTML
    assert errors[0]["ename"] == "CheckFailure"
    assert len(errors[0]["traceback"]) == 1, errors[0]["traceback"]      # the block said it all
    assert "utils/" not in "".join(errors[0]["traceback"]) and "Traceback" not in "".join(errors[0]["traceback"])


def test_elsewhere_a_failure_is_plain_text_wrapped_at_spaces():
    outputs = run_in_kernel(WRONG_PATCHIFY, frontend=False)
    assert not [o for o in outputs if o["type"] == "display_data"], "no HTML block outside a frontend"
    (error,) = [o for o in outputs if o["type"] == "error"]
    lines = [ANSI.sub("", line) for line in error["traceback"]]
    assert lines[0] == "CheckFailure:" and lines[1].startswith("✗ patchify")
    assert "utils/" not in "\n".join(lines)
    too_long = [line for line in lines if len(line) > TEXT_WIDTH and " " in line.strip()]
    assert not too_long, too_long
    # Wrapping only moved words: the report's words are all there, in order.
    assert " ".join(" ".join(lines[1:]).split()) == " ".join(error["evalue"].split())


def test_an_unwritten_answer_shows_not_implemented_yet_block():
    outputs = run_in_kernel(STUB_PATCHIFY, frontend=True)
    (shown,) = [o for o in outputs if o["type"] == "display_data"]
    assert "course-check-todo" in shown["data"]["text/html"]
    assert "not implemented yet" in shown["data"]["text/html"]
    assert [o["ename"] for o in outputs if o["type"] == "error"] == ["NotImplementedYet"]


@pytest.mark.parametrize("line", [
    "  Largest difference at [0, 1, 2, 1] (n, c_out, h_out, w_out): yours -4.786123456789, expected "
    "2.071987654321 (allowed 1e-05 + 0.0001·|expected|).",
    "  " + "x" * 150,
    "short",
    "  Case 3 of 6: " + " ".join(f"-{k}.{k}e-0{k}" for k in range(1, 10)) * 3,
])
def test_wrapping_never_splits_a_token(line):
    out = wrapped([line])
    assert out[0].startswith(line[: len(line) - len(line.lstrip(" "))])    # the indent is kept
    assert [w for o in out for w in o.split()] == line.split()
    assert all(len(o) <= TEXT_WIDTH or " " not in o.strip() for o in out)
    assert all(o.startswith("    ") for o in out[1:]) or line.startswith(" ") is False


def test_the_report_block_escapes_what_it_shows():
    report = Report(headline="f <b>", case="Case 1 of 1: <script>", details=["<img src=x onerror=1>"],
                    likely_cause="a & b", hint="<i>")
    block = report.html()
    assert "<script>" not in block and "<img" not in block and "<i>" not in block and "&amp;" in block


# ----------------------------------------------------------------------------- ready()

def define_cell(source: str, namespace: dict, name: str) -> None:
    """Run ``source`` the way IPython runs a cell: compiled under a file name linecache knows."""
    filename = f"<cell-{name}>"
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    exec(compile(source, filename, "exec"), namespace)


VIT_STUB = '''
import torch.nn as nn
class EncoderBlock(nn.Module):
    """A block."""
    def __init__(self, num_heads):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()

class ViT(nn.Module):
    def __init__(self, image_size):
        super().__init__()
        self.size = image_size
'''


def test_ready_names_the_answer_to_finish_first(capsys):
    import utils.vit  # noqa: F401  (the notebook imported its checks: sections come from there)
    namespace = {"__name__": "__main__"}
    define_cell("from utils import ready\n", namespace, "imports")
    define_cell("def patchify(x, p):\n    '''doc'''\n    raise NotImplementedError()\n", namespace, "a")
    define_cell(VIT_STUB, namespace, "b")
    define_cell("def embed_tokens(t, c, p):\n    return t\n", namespace, "c")

    define_cell("ok = ready('patchify')\n", namespace, "d1")
    first = capsys.readouterr().out
    define_cell("ok2 = ready('ViT')\n", namespace, "d2")
    second = capsys.readouterr().out
    define_cell("ok3 = ready('embed_tokens')\nok4 = ready('attention_weights')\n", namespace, "d3")
    third = capsys.readouterr().out.splitlines()

    assert namespace["ok"] is False and first.count("\n") == 1 and "`patchify`" in first
    assert "Exercise 1" in first and first.startswith("⏸ Finish")
    assert namespace["ok2"] is False and "`ViT`" in second   # its EncoderBlock is still the stub
    assert namespace["ok3"] is True and namespace["ok4"] is False
    assert len(third) == 1 and third[0].startswith("⏸ Run the cell that defines `attention_weights`")


@pytest.mark.parametrize("source, unfinished", [
    ("def f():\n    raise NotImplementedError()\n", True),
    ("def f():\n    raise NotImplementedError\n", True),
    ("def f():\n    # YOUR CODE HERE\n    raise NotImplementedError('later')\n", True),
    ("def f(x):\n    if x:\n        raise NotImplementedError()\n    return 1\n", False),
    ("class A:\n    def __init__(self):\n        super().__init__()\n        raise NotImplementedError()\n"
     "f = A.__init__\n", True),
    ("def f():\n    return 1\n", False),
    ("def f():\n    raise ValueError()\n", False),
])
def test_a_stub_is_a_body_that_only_raises_not_implemented(source, unfinished):
    namespace = {}
    define_cell(source, namespace, f"stub-{abs(hash(source))}")
    assert is_unfinished(namespace["f"]) is unfinished


# ----------------------------------------------------------------------------- progress()

def test_progress_lists_every_graded_cell_with_points_and_state(tmp_path, capsys):
    notebook = tmp_path / "vit.ipynb"
    shutil.copy(REPO_ROOT / "release" / "vit" / "vit.ipynb", notebook)
    nb = nbformat.read(notebook, as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source
                 for c in nbformat.read(REPO_ROOT / "source" / "vit" / "vit.ipynb", as_version=4).cells
                 if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    namespace = {"__name__": "__main__"}
    imports = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "imports")
    define_cell(imports, namespace, "p-imports")
    define_cell(solutions["patchify"], namespace, "p-patchify")
    define_cell(WRONG_PATCHIFY.split("check_patchify(patchify)")[0].replace("patchify", "patch_embed_linear")
                .replace("(x, patch_size)", "(x, weight, bias, patch_size)"), namespace, "p-wrong")
    define_cell("def patch_embed_conv(x, weight, bias, patch_size):\n    raise NotImplementedError()\n",
                namespace, "p-stub")
    define_cell(f"from utils import progress\nresult = progress({str(notebook)!r})\n", namespace, "p-run")
    result = namespace["result"]

    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(result.rows) == len(graded)
    assert [row.points for row in result.rows] == [float(c.metadata["nbgrader"]["points"]) for c in graded]
    states = {row.title.split(": ")[-1]: row.state for row in result.rows}
    assert states["patchify"] == "pass" and states["patch_embed_linear"] == "fail"
    assert states["patch_embed_conv"] == "todo" and states["ViT"] == "missing"
    assert result.rows[-1].state == "manual" and "not answered yet" in result.rows[-1].detail
    failing = next(row for row in result.rows if row.state == "fail")
    assert failing.detail.startswith("case ") and "\n" not in failing.detail
    assert result.earned == 1 and result.auto_points == sum(r.points for r in result.rows if r.state != "manual")
    html = result._repr_html_()
    assert html.count("<tr>") == len(graded) + 1 and "course-progress" in html
    assert "2 of" not in result.summary() and result.summary().startswith("1 of 7 checked exercises")
    assert capsys.readouterr().out == "", "a check showed its own output during progress()"


def test_progress_outside_a_frontend_runs_nothing(capsys, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert progress() is None
    assert capsys.readouterr().out.count("\n") == 1


# ----------------------------------------------------------------------------- Run All

@pytest.mark.parametrize("path", RELEASE_NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_of_a_release_lets_run_all_go_on(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all("raises-exception" in c.metadata.get("tags", []) for c in code)
    assert not any("raises-exception" in c.metadata.get("tags", []) for c in nb.cells if c.cell_type != "code")


def test_source_notebooks_keep_errors_fatal_for_nbval():
    """nbval reads raises-exception as 'an error is expected': the instructor's notebooks must not have it."""
    for path in sorted((REPO_ROOT / "source").glob("*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert not any("raises-exception" in c.metadata.get("tags", []) for c in nb.cells), path


# ----------------------------------------------------------------------------- the student's JupyterLab

def test_configure_makes_plain_jupyter_lab_the_students(tmp_path):
    from utils.instructor.lab import configure_environment
    labconfig = tmp_path / "etc" / "jupyter" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(json.dumps({"disabledExtensions": {"other:plugin": True}}))
    written = configure_environment(tmp_path)
    assert len(written) == 3
    disabled = json.loads((labconfig / "page_config.json").read_text())["disabledExtensions"]
    assert disabled["other:plugin"] is True and disabled["@jupyter/nbgrader:formgrader"] is True
    servers = tmp_path / "etc" / "jupyter" / "jupyter_server_config.d"
    extensions = json.loads((servers / "nbgrader_student.json").read_text())["ServerApp"]["jpserver_extensions"]
    assert extensions["nbgrader.server_extensions.formgrader"] is False
    assert sorted(["nbgrader.json", "nbgrader_student.json"])[-1] == "nbgrader_student.json"   # loaded last
    assert "c.Execute.timeout" in (tmp_path / "etc" / "jupyter" / "nbgrader_config.py").read_text()


@pytest.mark.parametrize("exchange", [False, True])
def test_the_assignment_list_says_plainly_when_there_is_no_exchange(tmp_path, monkeypatch, exchange):
    from utils.instructor.student_lab import NO_EXCHANGE, CourseAssignmentList
    root = tmp_path / "exchange"
    if exchange:
        root.mkdir()
    course = tmp_path / "home"
    course.mkdir()
    (course / "nbgrader_config.py").write_text(textwrap.dedent(f"""
        c = get_config()
        c.CourseDirectory.course_id = "dl-architectures"
        c.Exchange.root = {str(root)!r}
    """))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", "")
    monkeypatch.chdir(course)        # a student's server runs in its root folder
    manager = CourseAssignmentList()
    manager.root_dir = str(course)
    courses, listed = manager.list_courses(), manager.list_assignments(course_id="dl-architectures")
    if exchange:      # nbgrader's own answer, unchanged
        from nbgrader.server_extensions.assignment_list.handlers import AssignmentList
        stock = AssignmentList()
        stock.root_dir = str(course)
        assert courses == stock.list_courses() and courses["success"]
        assert listed == stock.list_assignments(course_id="dl-architectures") and listed["success"]
    else:
        assert courses == {"success": True, "value": ["dl-architectures"]}
        assert listed == {"success": False, "value": NO_EXCHANGE}
        assert "another way" in NO_EXCHANGE and "exchange" in NO_EXCHANGE


def test_every_course_module_that_a_notebook_kernel_imports_avoids_torch_for_ready():
    """ready() and progress() are imported by the NumPy notebooks, whose grading kernel has no torch."""
    code = "import sys, utils; from utils import ready, progress; print('torch' in sys.modules)"
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == "False"
