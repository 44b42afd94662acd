"""What a check tells the student: a passed result or a failure report.

Both render as plain text (terminals, nbgrader's feedback HTML) and as HTML in
JupyterLab. A failure is an ``AssertionError`` subclass so that nbgrader counts
the test cell as failed; its message *is* the feedback.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Report:
    """The parts of a failure message, in the order a student reads them."""

    headline: str                      # "deform_conv2d does not match torchvision.ops.deform_conv2d"
    case: str = ""                     # "Case 3 of 6: N=2, C_in=3, ..."
    details: list[str] = field(default_factory=list)   # shape / values lines
    # Where and how the values differ when no catalogued mistake explains them (utils.checks.characterise)
    pattern: list[str] = field(default_factory=list)
    likely_cause: str = ""             # a named mistake, when one matched
    hint: str = ""
    section: str = ""                  # the notebook section to reread ("2.1 The LSTM cell")

    def lines(self) -> list[str]:
        out = [f"✗ {self.headline}"]
        if self.case:
            out.append(f"  {self.case}")
        out.extend(f"  {line}" for line in self.details + self.pattern)
        if self.likely_cause:
            out.append(f"  Likely cause: {self.likely_cause}")
        if self.hint:
            out.append(f"  Hint: {self.hint}")
        if self.section:
            out.append(f"  See the notebook section “{self.section}”.")
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def html(self) -> str:
        parts = [f'<div class="course-check course-check-fail" '
                 f'style="border-left:4px solid #c62828;padding:4px 10px;margin:2px 0">'
                 f'<b style="color:#c62828">✗ {html.escape(self.headline)}</b>']
        if self.case:
            parts.append(f"<div>{html.escape(self.case)}</div>")
        if self.details:
            parts.append("<pre style='margin:4px 0'>" +
                         html.escape("\n".join(self.details)) + "</pre>")
        if self.pattern:
            parts.append("<div>" + html.escape(" ".join(self.pattern)) + "</div>")
        if self.likely_cause:
            parts.append(f"<div><b>Likely cause:</b> {html.escape(self.likely_cause)}</div>")
        if self.hint:
            parts.append(f"<div><b>Hint:</b> {html.escape(self.hint)}</div>")
        if self.section:
            parts.append(f"<div>See the notebook section “{html.escape(self.section)}”.</div>")
        parts.append("</div>")
        return "".join(parts)


class CheckFailure(AssertionError):
    """Raised by a ``check_*`` function; ``str(error)`` is the feedback."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__("\n" + report.text())

    def _repr_html_(self) -> str:
        return self.report.html()

    def _render_traceback_(self) -> list[str]:
        """IPython's traceback of a failed check: the exception's name and the report, as plain text.

        The report already says where the student's code failed; the frames that raised are ours.
        It is the same text nbgrader's feedback shows for a graded test cell.
        """
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m:", *self.report.lines()]


class NotImplementedYet(CheckFailure):
    """The student's function still raises ``NotImplementedError``."""


@dataclass
class CheckResult:
    """Returned by a ``check_*`` function when every case passed."""

    function: str
    reference: str
    n_cases: int
    max_abs_diff: float
    tolerance: str
    exact: bool = False                # whole-number answers: no difference or tolerance worth stating

    def text(self) -> str:
        if self.exact:
            return f"✓ {self.function} matches {self.reference} on all {self.n_cases} cases (exactly)."
        return (f"✓ {self.function} matches {self.reference} on all {self.n_cases} cases "
                f"(largest difference {self.max_abs_diff:.1e}, allowed {self.tolerance}).")

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        """JupyterLab's view; ``text/plain`` (``repr``) stays the plain :meth:`text`."""
        cases = f"all {self.n_cases} cases" if self.n_cases != 1 else "its 1 case"
        return (f'<div class="course-check course-check-pass" '
                f'style="border-left:4px solid #2e7d32;padding:4px 10px;margin:2px 0">'
                f'<b style="color:#2e7d32">✓ Passed:</b> <code>{html.escape(self.function)}</code> '
                f"matches {html.escape(self.reference)} on {cases}."
                + ("</div>" if self.exact else
                   f'<div style="opacity:0.75;font-size:90%">Largest difference {self.max_abs_diff:.1e}, '
                   f"allowed {html.escape(self.tolerance)}.</div></div>"))


def raise_failure(report: Report, kind: type[CheckFailure] = CheckFailure):
    """Raise the failure with no chained exception, so the student sees the feedback, not our internals."""
    error = kind(report)
    error.__suppress_context__ = True
    raise error


def show(result: CheckResult) -> None:
    """Show a passed check: an HTML box in JupyterLab, the plain text everywhere else.

    The output carries both ``text/html`` and ``text/plain``, so a terminal, nbconvert's text
    exports and nbgrader's feedback can fall back on the text. Failures are raised, never shown
    here: their message is the plain-text traceback.
    """
    try:
        from IPython import get_ipython
        from IPython.display import display
        if get_ipython() is not None:
            display({"text/plain": result.text(), "text/html": result._repr_html_()}, raw=True)
            return
    except ImportError:
        pass
    print(result.text())
