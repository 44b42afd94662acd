"""What a check tells the student: a passed result or a failure report.

Both render as plain text (terminals, Validate, nbgrader's feedback HTML) and as HTML in
JupyterLab. A failure is an ``AssertionError`` subclass so that nbgrader counts the test cell as
failed; its message *is* the feedback.

In a kernel that a notebook frontend started (JupyterLab sets ``JPY_SESSION_NAME``), a failure is
shown as an HTML block and the exception that follows it prints one line; in every other kernel
(Validate, autograde, nbval, a terminal) the exception's traceback is the whole report as plain
text, wrapped at word boundaries to :data:`TEXT_WIDTH` columns.
"""
from __future__ import annotations

import contextlib
import contextvars
import html
import os
import textwrap
from dataclasses import dataclass, field

# nbgrader's Validate cuts lines longer than its width (90) minus its indent; the report wraps first.
TEXT_WIDTH = 80
_QUIET = contextvars.ContextVar("course_checks_quiet", default=False)


@contextlib.contextmanager
def quiet():
    """Run checks without showing anything (a pass is returned, a failure still raised): the progress
    overview runs every check of a notebook and shows one table instead."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def in_notebook_frontend() -> bool:
    """Whether this kernel shows its outputs in a notebook frontend (JupyterLab, Notebook).

    jupyter_server gives the kernels it starts for a notebook session ``JPY_SESSION_NAME``; the
    kernels nbgrader's Validate, autograde and nbval start themselves do not have it.
    """
    return bool(os.environ.get("JPY_SESSION_NAME")) and _ipython() is not None


def wrapped(lines: list[str], width: int = TEXT_WIDTH) -> list[str]:
    """``lines`` wrapped at spaces to ``width`` columns, a continuation indented under its line's text.

    A token (a number, an index) is never split, even when it alone is longer than ``width``.
    """
    out = []
    for line in lines:
        body = line.lstrip(" ")
        indent = " " * (len(line) - len(body))
        out.extend(textwrap.wrap(body, width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                                 break_long_words=False, break_on_hyphens=False) or [line])
    return out


# What a failure report says beyond "it differs": a catalogued mistake named, the difference described
# (where and what kind, utils.checks.characterise), a rule of the notebook quoted, an answer still the stub,
# a library call in a from-scratch answer, the error the code raised, or only the values / shape.
DIAGNOSES = ("named", "described", "rule", "not implemented", "from scratch", "raised", "values")


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

    def diagnosis(self) -> str:
        """What the report tells beyond "it differs", one of :data:`DIAGNOSES`."""
        if self.likely_cause:
            return "named"
        if self.pattern:
            return "described"
        if "breaks a rule" in self.headline:
            return "rule"
        if self.headline.endswith("not implemented yet"):
            return "not implemented"
        if "must be written from scratch" in self.headline:
            return "from scratch"
        if self.headline.endswith("raised an error"):
            return "raised"
        return "values"

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

    def html(self, kind: str = "fail") -> str:
        """The report as a block of labelled rows; text wraps at spaces only, never inside a number."""
        colour = COLOURS[kind]
        rows = []
        if self.case:
            label, _, rest = self.case.partition(": ")
            rows.append(("Case", f"<b>{html.escape(label)}</b>: {html.escape(rest)}" if rest
                         else html.escape(self.case)))
        if self.details or self.pattern:
            rows.append(("Where", "".join(f"<div>{html.escape(line)}</div>"
                                          for line in self.details + self.pattern)))
        if self.likely_cause:
            rows.append(("Likely cause", html.escape(self.likely_cause)))
        if self.hint:
            rows.append(("Hint", html.escape(self.hint)))
        if self.section:
            rows.append(("Reread", f"the notebook section “{html.escape(self.section)}”"))
        body = "".join(f'<tr><th style="{_LABEL_STYLE}">{label}</th><td style="{_VALUE_STYLE}">{value}</td></tr>'
                       for label, value in rows)
        headline = html.escape(self.headline_text(kind))
        return (f'<div class="course-check course-check-{kind}" style="{_block_style(colour)}">'
                f'<div style="color:{colour};font-weight:bold;margin-bottom:4px">{headline}</div>'
                + (f'<table style="border-collapse:collapse;margin:0">{body}</table>' if body else "")
                + "</div>")

    def headline_text(self, kind: str = "fail") -> str:
        return f"{'…' if kind == 'todo' else '✗'} {self.headline}"


COLOURS = {"fail": "#c62828", "todo": "#8d6e00", "pass": "#2e7d32"}
_WRAP = "white-space:normal;word-break:normal;overflow-wrap:normal"
_LABEL_STYLE = ("text-align:left;vertical-align:top;padding:1px 12px 1px 0;white-space:nowrap;"
                "font-weight:600;background:none;border:none")
_VALUE_STYLE = f"text-align:left;vertical-align:top;padding:1px 0;{_WRAP};background:none;border:none"


def _block_style(colour: str) -> str:
    return (f"border-left:4px solid {colour};padding:6px 12px;margin:2px 0;font-family:var(--jp-ui-font-family,"
            f"sans-serif);font-size:var(--jp-content-font-size1,14px);line-height:1.45;{_WRAP}")


class CheckFailure(AssertionError):
    """Raised by a ``check_*`` function; ``str(error)`` is the feedback."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__("\n" + report.text())

    kind = "fail"
    shown = False                      # the HTML block is already in the cell's output

    def _repr_html_(self) -> str:
        return self.report.html(self.kind)

    def _render_traceback_(self) -> list[str]:
        """IPython's traceback of a failed check: never the frames of this package.

        After the HTML block (a notebook frontend), one line, so the report is not printed twice;
        elsewhere the report as plain text wrapped at word boundaries, the same text nbgrader's
        Validate and feedback show.
        """
        name = f"\x1b[0;31m{type(self).__name__}\x1b[0m"
        if self.shown:
            return [f"{name}: the check above failed (grading counts this cell as failed)."]
        return [f"{name}:", *wrapped(self.report.lines())]


class NotImplementedYet(CheckFailure):
    """The student's function still raises ``NotImplementedError``."""

    kind = "todo"


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
        colour = COLOURS["pass"]
        return (f'<div class="course-check course-check-pass" style="{_block_style(colour)}">'
                f'<b style="color:{colour}">✓ Passed:</b> <code>{html.escape(self.function)}</code> '
                f"matches {html.escape(self.reference)} on {cases}."
                + ("</div>" if self.exact else
                   f'<div style="opacity:0.75;font-size:90%">Largest difference {self.max_abs_diff:.1e}, '
                   f"allowed {html.escape(self.tolerance)}.</div></div>"))


def raise_failure(report: Report, kind: type[CheckFailure] = CheckFailure):
    """Raise the failure with no chained exception, so the student sees the feedback, not our internals.

    In a notebook frontend the report is shown first as an HTML block (with its plain text for
    viewers without HTML).
    """
    error = kind(report)
    error.__suppress_context__ = True
    if not _QUIET.get() and in_notebook_frontend():
        _display({"text/plain": report.text(), "text/html": error._repr_html_()})
        error.shown = True
    raise error


def _display(bundle: dict) -> None:
    from IPython.display import display
    display(bundle, raw=True)


def show(result: CheckResult) -> None:
    """Show a passed check: an HTML box in JupyterLab, the plain text everywhere else.

    The output carries both ``text/html`` and ``text/plain``, so a terminal, nbconvert's text
    exports and nbgrader's feedback can fall back on the text. Failures are raised
    (:func:`raise_failure`), never shown here.
    """
    if _QUIET.get():
        return
    if _ipython() is not None:
        _display({"text/plain": result.text(), "text/html": result._repr_html_()})
        return
    print(result.text())
