"""SanitizeUntrustedHTML: no HTML or script of a submission survives grading, honest content does.

Each payload is judged on what a browser would get: the Markdown is rendered with nbconvert's
renderer (the formgrader's and the feedback's) and the HTML is read with BeautifulSoup, a parser
independent of the sanitiser's own check. The browser test (tests/browser/test_untrusted_html.py)
renders a graded submission in Chromium.
"""
from __future__ import annotations

import ast
import base64
import copy
import html
import re

import bs4
import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from utils.grading.preprocessors import SanitizeUntrustedHTML
from utils.grading.preprocessors.sanitize_untrusted_html import url_scheme
from utils.instructor.course import REPO_ROOT

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()
DANGEROUS_TAGS = {"script", "style", "iframe", "object", "embed", "svg", "math", "form", "meta", "link", "base",
                  "frame", "frameset", "applet", "template", "noscript", "xmp", "textarea", "input", "button"}


def notebook(cells, metadata=None):
    """A notebook as a submission may hold it: not validated (nbformat's constructors would refuse forged fields)."""
    nb = new_notebook()
    nb.cells, nb.metadata = list(cells), metadata or {}
    return nb


def sanitize(nb):
    nb, _ = SanitizeUntrustedHTML().preprocess(nb, {})
    return nb


def dangers(page: str) -> list[str]:
    """What in an HTML page could run script or load a page: dangerous tags, on* attributes, unsafe URLs."""
    found = []
    for tag in bs4.BeautifulSoup(page, "html.parser").find_all(True):
        if tag.name in DANGEROUS_TAGS and not (tag.name == "input" and tag.get("type") == "checkbox"):
            found.append(f"<{tag.name}>")
        for name, value in tag.attrs.items():
            value = " ".join(value) if isinstance(value, list) else value
            if name.startswith("on") or name in ("srcdoc", "formaction", "xlink:href", "action", "style"):
                if not (name == "style" and re.fullmatch(r"text-align:\s*\w+;?", value)):
                    found.append(f"{name}= on <{tag.name}>")
            if name in ("href", "src", "data", "background", "poster"):
                scheme = url_scheme(value)
                if scheme not in ("", "http", "https", "mailto") and not value.startswith("data:image/png"):
                    found.append(f"{name}={value!r} on <{tag.name}>")
    return found


def script_link(markdown: str) -> bool:
    """A Markdown link whose destination, decoded as CommonMark does (escapes, entities), is javascript:."""
    for url in re.findall(r"\]\(\s*<?([^\s)>]*)|^\s*\[[^\]]+\]:\s*(\S+)", markdown, re.M):
        url = html.unescape(re.sub(r"\\(.)", r"\1", "".join(url)))
        if re.sub(r"[\x00-\x20]", "", url).lower().startswith("javascript:"):
            return True
    return False


def rendered(markdown: str) -> str:
    return markdown2html_mistune(markdown)


def text_of(page: str) -> str:
    return bs4.BeautifulSoup(page, "html.parser").get_text()


# ----------------------------------------------------------------------------- Markdown payloads

HONEST = "My answer: attention is all you need."
MARKDOWN_PAYLOADS = {
    "img onerror": "<img src=x onerror=\"window.__pwned=1\">",
    "img onerror, upper case and slashes": "<IMG/SRC=\"x\"/ONERROR=\"window.__pwned=1\">",
    "svg onload": "<svg onload=\"window.__pwned=1\"><circle r=5/></svg>",
    "script": "<script>window.__pwned = 1</script>",
    "script split over lines": "<script\n>window.__pwned = 1</script\n>",
    "iframe srcdoc": "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>",
    "style with expression": "<div style=\"width: expression(alert(1)); background:url(javascript:alert(1))\">x</div>",
    "style tag": "<style>body { background: url(javascript:alert(1)) }</style>",
    "raw link javascript:": "<a href=\"javascript:window.__pwned=1\">click</a>",
    "markdown link javascript:": "[click](javascript:window.__pwned=1)",
    "markdown link with angle brackets": "[click](<javascript:window.__pwned=1>)",
    "markdown link, entity-obfuscated": "[click](java&#x09;script:window.__pwned=1)",
    "markdown link, numeric entities": "[click](&#106;avascript:window.__pwned=1)",
    "markdown link, backslash-escaped colon": "[click](javascript\\:window.__pwned=1)",
    "markdown link, upper case and spaces": "[click](  JaVaScRiPt:window.__pwned=1 )",
    "reference link": "[click][evil]\n\n[evil]: javascript:window.__pwned=1",
    "autolink": "<javascript:window.__pwned=1>",
    "image data:text/html": "![x](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0xPC9zY3JpcHQ+)",
    "link data:text/html": "[x](data:text/html,<script>window.__pwned=1</script>)",
    "object": "<object data=\"data:text/html,<script>parent.__pwned=1</script>\"></object>",
    "embed": "<embed src=\"javascript:window.__pwned=1\">",
    "form": "<form action=\"javascript:window.__pwned=1\"><button>go</button></form>",
    "meta refresh": "<meta http-equiv=\"refresh\" content=\"0; url=javascript:window.__pwned=1\">",
    "base": "<base href=\"javascript:/\">",
    "link import": "<link rel=\"import\" href=\"data:text/html,<script>x</script>\">",
    "math with href": "<math><mi xlink:href=\"javascript:window.__pwned=1\">x</mi></math>",
    "html comment then script": "<!-- note --><script>window.__pwned=1</script>",
    "html block with markdown inside": "<div>\n\n*x*\n\n</div><details open ontoggle=window.__pwned=1>",
    "mermaid fence": "```mermaid\ngraph TD; A-->B\n<img src=x onerror=window.__pwned=1>\n```",
    "fence inside a list, mistune style": "- item\n   ```\n<img src=x onerror=window.__pwned=1>\n   ```\n",
    "unclosed code span": "`<img src=x onerror=window.__pwned=1>",
    "code span across a blockquote": "> ```\n<img src=\"x\" onerror=\"window.__pwned=1\">\n```",
    "escaped backslash, then a tag": "\\\\<img src=\"x\" onerror=\"window.__pwned=1\">",
    "MathJax href": "$\\href{javascript:window.__pwned=1}{x}$ and $$\\style{x}{y}\\class{a}{b}$$",
}


@pytest.mark.parametrize("payload", MARKDOWN_PAYLOADS.values(), ids=MARKDOWN_PAYLOADS.keys())
def test_a_written_answer_with_html_renders_no_script_and_keeps_the_answer(payload):
    source = f"{HONEST}\n\n{payload}\n\nThe end of my answer."
    # The control: nbconvert renders it dangerous, or a browser reading it as HTML would run it (JupyterLab's
    # renderer reads Markdown more strictly than nbconvert's), or a CommonMark link runs script.
    assert dangers(rendered(source)) or dangers(payload) or script_link(payload) or "\\href" in payload, \
        "the payload is not dangerous before sanitising: the test would prove nothing"
    nb = sanitize(notebook([new_markdown_cell(source)]))
    cleaned = nb.cells[0].source
    page = rendered(cleaned)
    assert dangers(page) == [], f"{cleaned!r} renders {page!r}"
    assert "\\href" not in cleaned and "\\style" not in cleaned and "\\class" not in cleaned
    text = text_of(page)
    assert HONEST in text.replace("\\", "") and "The end of my answer." in text.replace("\\", "")
    assert sanitize(copy.deepcopy(nb)).cells[0].source == cleaned, "sanitising twice changed it again"


def test_raw_html_is_shown_as_text_not_dropped():
    """The grader sees what the student tried: the tag reads as text."""
    nb = sanitize(notebook([new_markdown_cell("Look: <img src=x onerror=alert(1)> here")]))
    assert nb.cells[0].source == "Look: &lt;img src=x onerror=alert(1)> here"
    page = rendered(nb.cells[0].source)
    assert "<img src=x onerror=alert(1)> here" in text_of(page)
    assert bs4.BeautifulSoup(page, "html.parser").find("img") is None


def test_markdown_read_differently_than_expected_falls_back_to_plain_text():
    """Here the sanitiser takes ```…``` for a code span; nbconvert does not, and its check catches the <img>."""
    source = f"{HONEST}\n\n> ```\n<img src=\"x\" onerror=\"window.__pwned=1\">\n```"
    cleaned = sanitize(notebook([new_markdown_cell(source)])).cells[0].source
    assert cleaned == re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", source)   # every punctuation mark escaped
    page = rendered(cleaned)
    assert dangers(page) == [] and HONEST in text_of(page) and '<img src="x"' in text_of(page)
    assert sanitize(notebook([new_markdown_cell(cleaned)])).cells[0].source == cleaned   # the formgrader's pass


def test_a_very_long_answer_is_shown_as_plain_text():
    source = "Long answer with <b>bold</b> and $x$. " * 2000
    cleaned = sanitize(notebook([new_markdown_cell(source)])).cells[0].source
    assert cleaned.startswith("Long answer with \\<b\\>bold\\<\\/b\\> and \\$x\\$\\. ")
    assert dangers(rendered(cleaned)) == [] and "<b>bold</b>" in text_of(rendered(cleaned))


def test_markdown_that_renders_unsafe_even_as_plain_text_is_replaced_by_a_note(monkeypatch):
    monkeypatch.setattr(SanitizeUntrustedHTML, "markdown_problems", lambda self, text: ["tag <img>"])
    cleaned = sanitize(notebook([new_markdown_cell("<img src=x onerror=alert(1)>")])).cells[0].source
    assert "not shown" in cleaned and "<" not in cleaned


HONEST_MARKDOWN = [
    "Since $a < b$, the loss falls: $\\frac{\\partial L}{\\partial w} = x^\\top (y - t)$.",
    "```python\nhtml = \"<div class='x'>hi</div>\"\nif a < b and b > c:\n    pass\n```\n",
    "~~~\n<div>kept as code</div>\n~~~",
    "Use `<div>` and ``a `<b>` c`` in the text.",
    "# Heading\n\n> a quote\n\n1. one\n2. two\n\n- [x] done\n\n| a | b |\n|:--|--:|\n| 1 | 2 |",
    "See [the paper](https://arxiv.org/abs/1706.03762), [a section](#heading), [mail](mailto:a@b.c), "
    "![fig](attachment:fig.png) and ![inline](data:image/png;base64," + PNG + ").",
    "$$\\mathrm{softmax}(x)_i = \\frac{e^{x_i}}{\\sum_j e^{x_j}}$$ and \\(a \\le b\\).",
    "Costs: 5 < 7 and 3 > 2, R&D & co, a <= b, x -> y.",
]


@pytest.mark.parametrize("source", HONEST_MARKDOWN)
def test_honest_markdown_is_left_exactly_as_written(source):
    cell = new_markdown_cell(source)
    cell.attachments = {"fig.png": {"image/png": PNG}}
    assert sanitize(notebook([cell])).cells[0].source == source


def test_math_and_code_still_read_sensibly():
    nb = sanitize(notebook([
        new_markdown_cell("If $a<b$ then $a < b$."),
        new_markdown_cell("```html\n<div onclick=\"x\">literal</div>\n```"),
    ]))
    assert nb.cells[0].source == "If $a\\lt b$ then $a < b$."    # MathJax shows \lt as <
    page = rendered(nb.cells[1].source)
    code = bs4.BeautifulSoup(page, "html.parser").find("pre")
    assert code is not None and '<div onclick="x">literal</div>' in code.get_text()
    assert dangers(page) == []


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "source").glob("*/*.ipynb")),
                         ids=lambda p: p.relative_to(REPO_ROOT / "source").as_posix())
def test_the_course_notebooks_are_unchanged(path):
    """The instructor's lecture text (headings, math, code, tables) is ordinary Markdown: nothing to change."""
    nb = nbformat.read(path, as_version=4)
    assert sanitize(copy.deepcopy(nb)) == nb


# ----------------------------------------------------------------------------- outputs

def _code_cell(*outputs):
    cell = new_code_cell("show()", execution_count=1)
    cell.outputs = list(outputs)
    return cell


def _display(data, metadata=None):
    return new_output("display_data", data=data, metadata=metadata or {})


def test_html_output_with_plain_text_becomes_the_plain_text():
    nb = sanitize(notebook([_code_cell(_display({
        "text/html": "<b>3 rows</b><script>window.__pwned=1</script>", "text/plain": "3 rows"}))]))
    assert nb.cells[0].outputs[0].data == {"text/plain": "3 rows"}


def test_html_output_whose_plain_text_is_a_bare_repr_is_sanitised_and_kept():
    """IPython's HTML(...) says only "<IPython.core.display.HTML object>" in text/plain: the HTML is the content."""
    nb = sanitize(notebook([_code_cell(_display({
        "text/html": "<b>honest</b><img src=x onerror=window.__pwned=1>",
        "text/plain": "<IPython.core.display.HTML object>"}))]))
    assert nb.cells[0].outputs[0].data == {"text/html": '<b>honest</b><img src="x">',
                                          "text/plain": "<IPython.core.display.HTML object>"}


def test_html_only_output_keeps_harmless_markup_and_shows_the_rest_as_text():
    page = ("<div><b style=\"color:#c62828;position:fixed;top:0;margin-top:-500px\">✗ wrong</b> <i>hint</i>"
            "<img src=x onerror=\"window.__pwned=1\"><a href=\"javascript:alert(1)\">l</a>"
            "<a href=\"https://example.org\">ok</a><img src=\"data:image/png;base64," + PNG + "\">"
            "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe><svg onload=alert(1)></svg>"
            "<script>window.__pwned=1</script></div>")
    nb = sanitize(notebook([_code_cell(new_output("execute_result", data={"text/html": page},
                                                            execution_count=1))]))
    cleaned = nb.cells[0].outputs[0].data["text/html"]
    assert dangers(cleaned.replace('style="color:#c62828;"', "")) == [], cleaned
    soup = bs4.BeautifulSoup(cleaned, "html.parser")
    assert soup.find("b").get("style") == "color:#c62828;"       # colour kept, positioning dropped
    assert soup.find("i").get_text() == "hint"
    assert [a.get("href") for a in soup.find_all("a")] == [None, "https://example.org"]
    assert [img.get("src") for img in soup.find_all("img")] == ["x", f"data:image/png;base64,{PNG}"]
    assert "<script>window.__pwned=1</script>" in soup.get_text()  # shown as text


@pytest.mark.parametrize("mime", ["application/javascript", "text/javascript", "image/svg+xml",
                                  "application/vnd.jupyter.widget-view+json", "application/vnd.bokehjs_exec.v0+json",
                                  "application/vnd.plotly.v1+json", "application/x-shockwave-flash", "text/css"])
def test_script_carrying_outputs_are_dropped(mime):
    payload = "window.__pwned = 1" if "json" not in mime else {"model_id": "x", "code": "window.__pwned=1"}
    nb = sanitize(notebook([_code_cell(
        _display({mime: payload, "text/plain": "<Figure>"}),
        _display({mime: payload}))]))
    first, second = nb.cells[0].outputs
    assert first.data == {"text/plain": "<Figure>"}
    assert list(second.data) == ["text/plain"] and mime in second.data["text/plain"]
    assert "__pwned" not in second.data["text/plain"]


def test_markdown_latex_and_image_outputs():
    nb = sanitize(notebook([_code_cell(
        _display({"text/markdown": "**Loss** $a<b$ <img src=x onerror=window.__pwned=1>"}),
        _display({"text/latex": "$\\href{javascript:alert(1)}{click}$"}),
        _display({"image/png": PNG, "text/plain": "<Figure size 640x480>"},
                 {"image/png": {"width": 640, "height": "480\" onerror=\"x", "isolated": True}}),
        _display({"image/jpeg": "\"><script>window.__pwned=1</script>", "text/plain": "broken"}),
        _display({"text/html": "<p>x</p>"}, {"text/html": {"isolated": True}}),
    )]))
    markdown, latex, png, jpeg, isolated = nb.cells[0].outputs
    assert dangers(rendered(markdown.data["text/markdown"])) == []
    assert "**Loss**" in markdown.data["text/markdown"] and "\\lt b" in markdown.data["text/markdown"]
    assert latex.data["text/latex"] == "$href{javascript:alert(1)}{click}$"
    assert png.data == {"image/png": PNG, "text/plain": "<Figure size 640x480>"}
    assert png.metadata == {"image/png": {"width": 640}}
    assert jpeg.data == {"text/plain": "broken"}                     # not base64: not an image
    assert isolated.metadata == {}                                   # no isolated iframe of a data: URL


def test_stream_and_error_outputs_are_kept_and_forged_fields_dropped():
    stream = new_output("stream", name="stdout", text="<b>printed</b>\n")
    error = new_output("error", ename="ValueError", evalue="<img src=x>", traceback=["line 1", "line 2"])
    forged = new_output("stream", name="stdout", text="x")
    forged["name"] = "\"><script>"
    cell = _code_cell(stream, error, forged, new_output("execute_result", data={"text/plain": "1"},
                                                         execution_count=1))
    cell.outputs[3]["execution_count"] = "<script>"
    cell["execution_count"] = "<script>"
    cell.outputs.append({"output_type": "update_display_data", "data": {"text/html": "<script></script>"}})
    nb = sanitize(notebook([cell]))
    out = nb.cells[0].outputs
    assert [o.output_type for o in out] == ["stream", "error", "execute_result"]
    assert out[0].text == "<b>printed</b>\n" and out[1].evalue == "<img src=x>"   # text, escaped when shown
    assert out[2].execution_count is None and nb.cells[0].execution_count is None


# ----------------------------------------------------------------------------- attachments, metadata, raw cells

def test_svg_and_html_attachments_are_dropped():
    cell = new_markdown_cell("![a](attachment:a.png) ![b](attachment:b.svg)")
    cell.attachments = {
        "a.png": {"image/png": PNG, "image/svg+xml": "<svg onload=alert(1)/>"},
        "b.svg": {"image/svg+xml": "<svg onload=alert(1)/>"},
        "c.html": {"text/html": "<script>alert(1)</script>"},
    }
    nb = sanitize(notebook([cell]))
    assert nb.cells[0].attachments == {"a.png": {"image/png": PNG}}
    # nbconvert refuses an image of a missing attachment (the formgrader's page would fail): it links to "#".
    assert nb.cells[0].source == "![a](attachment:a.png) ![b](#)"
    HTMLExporter(template_name="classic").from_notebook_node(nb)


def test_metadata_that_carries_html_or_trust_is_removed():
    nb = notebook([new_code_cell("x"), new_markdown_cell("answer"), new_markdown_cell("forged")],
                  metadata={"kernelspec": {"name": "python3"}, "widgets": {
                      "application/vnd.jupyter.widget-state+json": {"state": {"x": "<script>"}}},
                      "title": "</title><script>x</script>"})
    nb.cells[0].metadata = {"trusted": True, "tags": ["\"><script>"], "jupyter": {"source_hidden": True},
                            "transient": {"remove_source": True},
                            "nbgrader": {"grade_id": "answer-1", "solution": True, "grade": False, "locked": False}}
    nb.cells[1].metadata = {"nbgrader": {"grade_id": "written_1.a", "solution": True, "grade": True, "points": 1}}
    nb.cells[2].metadata = {"nbgrader": {"grade_id": "x\"><img src=x onerror=alert(1)>", "solution": True}}
    nb = sanitize(nb)
    assert nb.metadata == {"kernelspec": {"name": "python3"}}
    assert nb.cells[0].metadata == {"nbgrader": {"grade_id": "answer-1", "solution": True, "grade": False,
                                                 "locked": False}}
    assert nb.cells[1].metadata["nbgrader"]["grade_id"] == "written_1.a"
    assert nb.cells[2].metadata == {}


def test_a_raw_html_cell_is_sanitised_and_other_raw_cells_kept():
    html_cell = new_raw_cell("<p>ok</p><script>window.__pwned=1</script>", metadata={"raw_mimetype": "text/html"})
    latex_cell = new_raw_cell("\\section{<b>}", metadata={"raw_mimetype": "text/latex"})
    nb = sanitize(notebook([html_cell, latex_cell]))
    assert nb.cells[0].source == "<p>ok</p>&lt;script&gt;window.__pwned=1&lt;/script&gt;"
    assert nb.cells[1].source == "\\section{<b>}"


# ----------------------------------------------------------------------------- configuration and exporters

def _config_list(name: str) -> list[str]:
    """The names in the list assigned to ``c.<name>`` in nbgrader_config.py (read, not run)."""
    tree = ast.parse((REPO_ROOT / "nbgrader_config.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == f"c.{name}":
            return [ast.unparse(e) for e in node.value.elts]
    raise AssertionError(f"c.{name} is not set in nbgrader_config.py")


def test_grading_sanitises_after_the_verdicts_and_before_the_scores_are_saved():
    order = _config_list("Autograde.autograde_preprocessors")
    assert order.index("SanitizeUntrustedHTML") == order.index("ApplyTrustedVerdicts") + 1
    assert order.index("SanitizeUntrustedHTML") > order.index("SandboxedExecute")
    assert order.index("SanitizeUntrustedHTML") < order.index("SaveAutoGrades")
    # Sanitised first; the formulas' MathML is then built from allow-lists (markdown_math_to_mathml.py).
    assert _config_list("HTMLExporter.preprocessors") == ["SanitizeUntrustedHTML", "MarkdownMathToMathML"]
    assert re.search(r"^c\.HTMLExporter\.sanitize_html = True$", (REPO_ROOT / "nbgrader_config.py").read_text(),
                     re.M)


def _malicious_notebook():
    answer = new_markdown_cell(f"{HONEST}\n\n<img src=x onerror=\"window.__pwned=1\">\n\n"
                               "[more](javascript:window.__pwned=1)",
                               metadata={"nbgrader": {"grade_id": "written", "solution": True, "grade": True,
                                                      "points": 1.0, "locked": False}})
    code = _code_cell(_display({"text/html": "<script>window.__pwned=1</script>", "text/plain": "honest output"}),
                      _display({"application/javascript": "window.__pwned=1"}),
                      _display({"text/markdown": "<svg onload=\"window.__pwned=1\"></svg>"}))
    code.metadata = {"nbgrader": {"grade_id": "code", "solution": True, "grade": False, "locked": False},
                     "trusted": True}
    return notebook([answer, code], metadata={"kernelspec": {"name": "python3", "language": "python",
                                                             "display_name": "Python 3"}})


def _formgrade_exporter(sanitise: bool) -> HTMLExporter:
    """The formgrader's exporter, configured as nbgrader_config.py does (or not at all)."""
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config
    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    if sanitise:
        config.HTMLExporter.preprocessors = [SanitizeUntrustedHTML]
        config.HTMLExporter.sanitize_html = True
    return HTMLExporter(config=config)


FORMGRADE_RESOURCES = {"assignment_id": "a", "notebook_id": "n", "submission_id": "s", "index": 0, "total": 1,
                       "base_url": "", "student": "mallory", "last_name": None, "first_name": None,
                       "notebook_path": "autograded/mallory/a/n.ipynb"}


def test_the_formgrader_exporter_sanitises_a_notebook_graded_before_this_existed():
    """Defence in depth: the configured exporter cleans an unsanitised autograded notebook when it renders it."""
    unsafe, _ = _formgrade_exporter(False).from_notebook_node(_malicious_notebook(),
                                                               resources=dict(FORMGRADE_RESOURCES))
    assert unsafe.count("window.__pwned=1") >= 3, "the control: unsanitised, the payloads are in the page"
    page, _ = _formgrade_exporter(True).from_notebook_node(_malicious_notebook(), resources=dict(FORMGRADE_RESOURCES))
    soup = bs4.BeautifulSoup(page, "html.parser")
    student = soup.select(".text_cell_render, .output_area")     # what the submission wrote (not nbgrader's form)
    assert len(student) == 4, [str(s)[:200] for s in student]
    assert dangers("".join(map(str, student))) == []
    assert not [s for s in soup.find_all("script") if "__pwned" in s.get_text()]
    text = "".join(s.get_text() for s in student)
    assert HONEST in text and "honest output" in text
    assert 'id="written"' in page, "the written answer's grading form is still there"


def test_sanitising_costs_little():
    """A whole course notebook is sanitised in well under a second (it runs once per graded notebook)."""
    import time
    nb = nbformat.read(REPO_ROOT / "source" / "cnn" / "cnn_layers.ipynb", as_version=4)
    started = time.perf_counter()
    sanitize(nb)
    assert time.perf_counter() - started < 2.0
