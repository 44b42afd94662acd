"""How a check's result looks: HTML in JupyterLab, plain text in terminals, tracebacks and feedback.

No browser needed: these look at the display data a kernel would send and at nbgrader's feedback
HTML of the graded course (the browser test sees the same outputs rendered by JupyterLab).
"""
from __future__ import annotations

import html
import re

import pytest
from IPython.core.formatters import DisplayFormatter

from utils.checks.feedback import TEXT_WIDTH, CheckFailure, CheckResult, Report, raise_failure, wrapped
from utils.checks.feedback import show as _show

RESULT = CheckResult("deform_conv2d", "torchvision.ops.deform_conv2d", 6, 1.8e-15, "1e-05 + 0.0001·|expected|")
REPORT = Report(headline="deform_conv2d does not match torchvision.ops.deform_conv2d",
                case="Case 2 of 6: N=1, C_in=1, C_out=2, 5×4 input",
                details=["Shape OK (1, 2, 5, 4). 40 of 40 values differ."],
                likely_cause="your output equals the reference computed with Δy and Δx swapped",
                hint="offset channel 2k is Δy (rows) & 2k+1 is Δx <columns>")


def test_a_passed_check_has_html_and_plain_text():
    data, _ = DisplayFormatter().format(RESULT)
    assert data["text/plain"] == RESULT.text()
    assert data["text/plain"].startswith("✓ deform_conv2d matches torchvision.ops.deform_conv2d on all 6 cases")
    page = data["text/html"]
    assert 'class="course-check course-check-pass"' in page and "✓ Passed:" in page
    assert "on all 6 cases" in page and "Largest difference 1.8e-15" in page


def test_show_prints_plain_text_outside_ipython(capsys):
    _show(RESULT)
    assert capsys.readouterr().out == RESULT.text() + "\n"


def test_a_failure_is_plain_text_and_its_html_is_escaped():
    with pytest.raises(CheckFailure) as info:
        raise_failure(REPORT)
    message = str(info.value)   # what the traceback shows: the text, nothing escaped
    assert "Δx <columns>" in message and "&lt;" not in message
    assert message.strip().splitlines()[0] == "✗ deform_conv2d does not match torchvision.ops.deform_conv2d"
    assert "Likely cause: your output equals the reference computed with Δy and Δx swapped" in message
    # IPython's traceback of it outside a notebook frontend: the exception's name, then the report's
    # lines wrapped at spaces (Validate cuts longer lines); none of our frames.
    shown = info.value._render_traceback_()
    assert "CheckFailure" in shown[0] and shown[1:] == wrapped(REPORT.lines())
    assert all(len(line) <= TEXT_WIDTH for line in shown[1:])
    page = info.value._repr_html_()
    assert "course-check-fail" in page and "&lt;columns&gt;" in page and "<columns>" not in page


def test_feedback_shows_check_results_as_plain_text(graded_course):
    """nbgrader's feedback HTML: the verdicts are text outputs (<pre>), never the notebook's HTML boxes."""
    for name in graded_course.names:
        pages = sorted((graded_course.root / "feedback" / "solution" / name).glob("*.html"))
        assert pages, f"no feedback for the solution of {name}"
        for path in pages:
            text = path.read_text(encoding="utf-8")
            assert "course-check" not in text, path
            passed = re.findall(r"<pre>(✓ [^<]*)</pre>", text)
            assert passed, f"{path}: no ✓ line in a text output"
    for o in graded_course.outcomes:
        if o.student in ("solution", "untouched"):
            continue
        text = "\n".join(html.unescape(p.read_text(encoding="utf-8"))
                         for p in (graded_course.root / "feedback" / o.student / o.assignment).glob("*.html"))
        assert "✗ " in text and "course-check" not in text, (o.student, o.assignment)
