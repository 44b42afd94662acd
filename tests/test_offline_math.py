"""Formulas in the feedback and the formgrader are MathML, drawn with no network, and safe for students' answers.

MarkdownMathToMathML converts the LaTeX of Markdown cells when a page is rendered; the course's
templates (utils/grading/templates) replace the CDN MathJax script of nbgrader's templates with
styles (MathML, output lines that wrap). Checked here: every formula of the course's notebooks
converts, nothing nbconvert's Markdown renderer would read as math is left over, the MathML
survives that renderer, a student's LaTeX cannot inject HTML, a formula that does not convert
stays readable, and the pages generate_feedback and the formgrader write load no script.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import bs4
import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath, markdown2html_mistune
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from utils.grading.preprocessors import MarkdownMathToMathML, SanitizeUntrustedHTML
from utils.grading.preprocessors import markdown_math_to_mathml as module
from utils.instructor.course import REPO_ROOT, nbgrader, nbgrader_metadata

SOURCE_NOTEBOOKS = sorted(REPO_ROOT.glob("source/*/*.ipynb"))

# What nbconvert renders from Markdown: its own tags, and the MathML the preprocessor may write.
MARKDOWN_TAGS = {"p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "table", "thead",
                 "tbody", "tr", "th", "td", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "div", "del", "img"}
MATHML_TAGS = set(MarkdownMathToMathML().mathml_elements)


class MathCountingRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, counting what it reads as math (what MathJax would have typeset)."""

    def __init__(self):
        super().__init__(escape=False, attachments={})
        self.math: list[str] = []

    def block_math(self, body):
        self.math.append(body)
        return super().block_math(body)

    def multiline_math(self, text):
        self.math.append(text)
        return super().multiline_math(text)

    def latex_environment(self, name, body):
        self.math.append(body)
        return super().latex_environment(name, body)

    def inline_math(self, body):
        self.math.append(body)
        return super().inline_math(body)


def math_read_by_nbconvert(markdown: str) -> list[str]:
    renderer = MathCountingRenderer()
    MarkdownWithMath(renderer=renderer).render(markdown)
    return renderer.math


def shown(markdown: str) -> str:
    """The page fragment nbconvert's Markdown filter writes for a cell after both rendering preprocessors."""
    nb = new_notebook(cells=[new_markdown_cell(markdown)])
    nb, _ = SanitizeUntrustedHTML().preprocess(nb, {})
    nb, _ = MarkdownMathToMathML().preprocess(nb, {})
    return markdown2html_mistune(nb.cells[0].source)


def live_html(page: str) -> list[str]:
    """Tags outside Markdown's and MathML's, and attributes that run script or load something."""
    found = []
    for tag in bs4.BeautifulSoup(page, "html.parser").find_all(True):
        if tag.name not in MARKDOWN_TAGS | MATHML_TAGS:
            found.append(f"<{tag.name}>")
        for name, value in tag.attrs.items():
            if name.lower().startswith("on") or name in ("style", "src", "srcset", "xlink:href") or (
                    name == "href" and str(value).strip().lower().startswith(("javascript", "data"))):
                found.append(f"{name} on <{tag.name}>")
    return found


# ----------------------------------------------------------------------------- the course's formulas

def test_every_formula_of_the_course_notebooks_converts():
    converter, sanitizer = MarkdownMathToMathML(), SanitizeUntrustedHTML()
    total, left = 0, []
    for path in SOURCE_NOTEBOOKS:
        nb, _ = sanitizer.preprocess(nbformat.read(path, as_version=4), {})
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "markdown":
                continue
            expected = math_read_by_nbconvert(cell.source)
            converted, count, problems = converter.convert_markdown(cell.source)
            left += [f"{path.name} cell {index}: {p}" for p in problems]
            assert count + len(problems) == len(expected), (path.name, index, expected)
            remaining = math_read_by_nbconvert(converted)
            assert remaining == [], f"{path.name} cell {index}: nbconvert still reads math in {remaining[:3]}"
            total += count
    print(f"\n{total} formulas in {len(SOURCE_NOTEBOOKS)} source notebooks converted to MathML")
    assert left == []
    assert total >= 400, f"only {total} formulas found: is the math of the notebooks still found?"


# ----------------------------------------------------------------------------- Markdown around the MathML

def test_inline_and_display_math_and_environments():
    page = shown("Inline $\\frac{a}{b}$ and \\\\(x\\\\), then\n\n$$\\sum_i x_i$$\n\n"
                 "$$\\begin{aligned} h &= W x \\\\ y &= h \\end{aligned}$$")
    soup = bs4.BeautifulSoup(page, "html.parser")
    displays = [m.get("display") for m in soup.find_all("math")]
    assert displays == ["inline", "inline", "block", "block"], page
    assert soup.find("mfrac") is not None
    aligned = soup.find_all("math")[3]
    assert [len(row.find_all("mtd")) for row in aligned.find_all("mtr")] == [2, 2], aligned


def test_mathml_text_is_not_read_as_markdown():
    page = shown("Let $a_*$ and $b_*$ be $\\text{input\\_size}$; `$x$` is code, and it costs \\$5.\n\n"
                 "| norm | $\\lVert x \\rVert_2$ |\n|---|---|\n| bar | $a|b$ |\n\n```python\ny = '$z$'\n```")
    soup = bs4.BeautifulSoup(page, "html.parser")
    assert soup.find("em") is None and soup.find("strong") is None, page
    assert [t.get_text() for t in soup.find_all("mtext")] == ["input_size"]
    assert soup.find("code").get_text() == "$x$" and "$z$" in soup.find("pre").get_text()
    assert "$5" in soup.get_text()
    assert [len(row.find_all("td")) for row in soup.find_all("tr")[1:]] == [2], "the | of $a|b$ split the row"
    assert len(soup.find_all("math")) == 5


def test_a_formula_that_does_not_convert_stays_latex(caplog):
    page = shown("Known $x^2$, unknown $\\foo{x}$, a stray alignment $a & b$.")
    soup = bs4.BeautifulSoup(page, "html.parser")
    assert len(soup.find_all("math")) == 1
    assert "$\\foo{x}$" in soup.get_text() and "$a & b$" in soup.get_text()
    assert "left as LaTeX" in caplog.text and "\\foo" in caplog.text


def test_feedback_generation_survives_a_converter_that_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RecursionError("deeply nested")

    monkeypatch.setattr(module, "latex_to_mathml", broken)
    page = shown("A formula $\\frac{a}{b}$ and text.")
    assert "<math" not in page and "$\\frac{a}{b}$" in bs4.BeautifulSoup(page, "html.parser").get_text()


def test_a_very_long_formula_stays_latex():
    formula = "$" + " + ".join(f"x_{{{i}}}" for i in range(600)) + "$"
    assert len(formula) > MarkdownMathToMathML().max_formula_chars
    assert "<math" not in shown(formula)


# ----------------------------------------------------------------------------- a student's LaTeX

# What a student might write inside a formula to break out of it.
LATEX_INJECTIONS = [
    "<script>alert(1)</script>",
    "x</math><img src=x onerror=alert(1)>",
    "\\text{</math><script>alert(1)</script>}",
    "\\mbox{<img src=x onerror=alert(1)>}",
    "\\href{javascript:alert(1)}{x}",
    "\\style{background:url(https://example.org/x)}{x}",
    '\\class{x" onmouseover="alert(1)}{x}',
    "\\unicode{x3C}script\\unicode{x3E}",
    "a_{<svg onload=alert(1)>}",
]
INJECTIONS = [f"${tex}$" for tex in LATEX_INJECTIONS] + [f"$${tex}$$" for tex in LATEX_INJECTIONS] + [
    "$x$<img src=x onerror=alert(1)>$y$"]


@pytest.mark.parametrize("answer", INJECTIONS)
def test_a_students_latex_injects_no_html(answer):
    assert live_html(shown(answer)) == []


@pytest.mark.parametrize("tex", LATEX_INJECTIONS)
def test_the_converter_alone_writes_no_live_html(tex):
    """Without the sanitiser before it (defence in depth): allow-listed MathML, or nothing (the LaTeX stays)."""
    for display in (False, True):
        mathml, problem = MarkdownMathToMathML().to_mathml(tex, display=display)
        if mathml is not None:
            assert live_html(mathml) == [] and live_html(markdown2html_mistune(mathml)) == [], mathml


def test_the_control_latex2mathml_alone_copies_html_into_its_output():
    """Why the preprocessor writes the MathML anew: latex2mathml keeps text such as <script> as it is."""
    raw = module.latex_to_mathml("\\mbox{<script>alert(1)</script>}")
    assert "<script>" in raw
    assert MarkdownMathToMathML().to_mathml("\\mbox{<script>alert(1)</script>}", display=False)[0] is None


# ----------------------------------------------------------------------------- the pages

LONG_ERROR = " ".join(f"case_{i}_differs" for i in range(24))
ANSWER = "Mine: $\\sigma(z) = \\frac{1}{1 + e^{-z}}$ and $x</math><img src=x onerror=alert(1)>$"


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """One assignment graded with the course's nbgrader_config.py: formulas, a written answer, a long error line."""
    root = tmp_path_factory.mktemp("offline-math-course")
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "source" / "m").mkdir(parents=True)
    nb = new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                "language_info": {"name": "python"}})
    nb.cells = [
        new_markdown_cell("# The gate $\\sigma(z)$\n\n$$\\begin{aligned} h_t &= \\tanh(W x_t + b) \\\\ "
                          "y_t &= V h_t \\end{aligned}$$", metadata=nbgrader_metadata("intro", locked=True)),
        new_code_cell("### BEGIN SOLUTION\nprint('ok')\n### END SOLUTION",
                      metadata=nbgrader_metadata("code", solution=True)),
        new_markdown_cell("Explain $\\sigma$.", metadata=nbgrader_metadata("written", solution=True, points=1.0)),
    ]
    nbformat.write(nb, root / "source" / "m" / "m.ipynb")
    nbgrader("generate_assignment", "m", "--force", root=root, timeout=300)
    submitted = nbformat.read(root / "release" / "m" / "m.ipynb", as_version=4)
    submitted.cells[1].source = f"raise ValueError({LONG_ERROR!r})"
    submitted.cells[2].source = ANSWER
    (root / "submitted" / "s" / "m").mkdir(parents=True)
    nbformat.write(submitted, root / "submitted" / "s" / "m" / "m.ipynb")
    nbgrader("autograde", "m", "--force", root=root, timeout=300)
    nbgrader("generate_feedback", "m", "--force", root=root, timeout=300)
    return root


def _loads_nothing(page: str) -> None:
    soup = bs4.BeautifulSoup(page, "html.parser")
    sources = [tag.get("src") or tag.get("href") for tag in soup.find_all(["script", "link", "img", "iframe"])]
    external = [s for s in sources if s and re.match(r"^\s*(https?:)?//", s)]
    assert external == [], external
    assert not re.search(r"cdn|mathjax\.js|latest\.js", " ".join(s for s in sources if s), re.I), sources
    assert "white-space: pre-wrap" in page


def test_the_feedback_page_shows_mathml_and_loads_nothing(course):
    page = (course / "feedback" / "s" / "m" / "m.html").read_text(encoding="utf-8")
    soup = bs4.BeautifulSoup(page, "html.parser")
    assert len(soup.find_all("math")) == 4, "the heading's, the aligned display, and the answer's two"
    assert soup.find("script") is None, "the feedback page needs no script"
    assert "$\\" not in soup.get_text()
    _loads_nothing(page)
    answer = soup.find("a", attrs={"name": "written"}).find_parent("div", class_="nbgrader_cell")
    assert live_html(str(answer.find("div", class_="text_cell_render"))) == []
    assert LONG_ERROR in soup.find("div", class_="output_error").get_text()


def test_the_formgrader_page_shows_mathml_and_loads_nothing(course):
    """The formgrader's exporter: nbgrader's settings for it, then nbgrader_config.py over them, as it loads them."""
    from nbgrader.server_extensions.formgrader.formgrader import FormgradeExtension
    from traitlets.config.loader import PyFileConfigLoader

    config = FormgradeExtension().build_extra_config()
    config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config())
    assert config.HTMLExporter.template_name == "formgrade"
    assert [p.__name__ for p in config.HTMLExporter.preprocessors] == ["SanitizeUntrustedHTML", "MarkdownMathToMathML"]
    resources = {"assignment_id": "m", "notebook_id": "m", "submission_id": "x", "index": 0, "total": 1,
                 "base_url": "", "student": "s", "last_name": None, "first_name": None,
                 "notebook_path": "autograded/s/m/m.ipynb"}
    page, _ = HTMLExporter(config=config).from_notebook_node(
        nbformat.read(course / "autograded" / "s" / "m" / "m.ipynb", as_version=4), resources=resources)
    soup = bs4.BeautifulSoup(page, "html.parser")
    assert len(soup.find_all("math")) == 4
    assert soup.find("div", class_="output_error") is not None and 'id="written"' in page
    _loads_nothing(page)
    assert any("MathJax" in s.get_text() for s in soup.find_all("script")), "the stand-in formgrade.js waits for"
