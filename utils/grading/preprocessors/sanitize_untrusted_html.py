"""SanitizeUntrustedHTML: nothing a submission wrote may run as HTML or script where it is shown.

A written answer is Markdown, and Markdown may hold raw HTML (``<img src=x onerror=…>``); an
output may hold ``text/html``, ``application/javascript`` or a widget. The formgrader and the
feedback pages render both with nbconvert inside the instructor's Jupyter origin, where such a
script can call the Jupyter API with the instructor's session. This preprocessor makes a notebook
safe to render:

* **Markdown** (every Markdown cell, and ``text/markdown`` outputs): each ``<`` that could open a
  tag, comment or declaration is written ``&lt;`` so it reads as text; link and image
  destinations other than http(s), mailto, relative ones, cell attachments and
  ``data:image/png|jpeg|gif`` become ``#``; MathJax commands that make links, load extensions or
  set CSS (``\\href``, ``\\require``, …) lose their backslash. Fenced code blocks, code spans and
  math are kept as written (a ``<`` that opens a tag inside math becomes ``\\lt``). The result is
  then rendered with nbconvert's own Markdown renderer, the one the formgrader and the feedback
  use, and every tag, attribute and URL of that HTML is checked against an allow-list; a cell
  that fails the check (Markdown read differently than expected) is shown as plain text, every
  punctuation mark backslash-escaped.
* **Attachments** of Markdown cells: only PNG, JPEG and GIF images are kept (no SVG, no HTML).
* **Outputs** of code cells: ``text/plain`` and PNG/JPEG/GIF images are kept; ``text/html`` is
  dropped where a ``text/plain`` version says the same (one other than a bare ``<… object>``
  repr), else reduced with bleach to harmless tags, attributes, URLs and CSS properties, other
  tags shown as text; ``text/latex`` loses the MathJax commands above; JavaScript, widget,
  Bokeh/Plotly, SVG and every other type are dropped, with a plain-text note where nothing else
  is left. Stream and error outputs are text and kept; output fields of the
  wrong type are dropped.
* **Metadata**: only the notebook and cell metadata keys the grader uses are kept (``trusted``,
  ``widgets``, tags and anything else a student set is removed); a cell whose nbgrader
  ``grade_id`` could break out of the HTML attribute the formgrader writes it into loses its
  nbgrader metadata (every gradebook cell has a plain grade_id).

It runs while grading after execution and the verdicts, before the scores are saved
(``c.Autograde.autograde_preprocessors``), so the autograded notebook is already clean; it runs
again in the formgrader's and generate_feedback's HTML exporter (``c.HTMLExporter.preprocessors``),
where it cleans notebooks graded before it existed. It is idempotent: a clean notebook is left
as it is.
"""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import bleach
from bleach.css_sanitizer import CSSSanitizer
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Integer, List, Unicode

# ----------------------------------------------------------------------------- URLs

_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def url_scheme(url: str) -> str:
    """The scheme a browser would read in ``url`` ('' for a relative URL), after entities and escapes.

    Markdown decodes backslash escapes and entities in a destination, and browsers ignore ASCII
    whitespace and control characters in a URL, so ``java&#x09;script:`` and ``javascript\\:``
    both read as ``javascript``.
    """
    text = html.unescape(_BACKSLASH_ESCAPE.sub(r"\1", url))
    text = "".join(ch for ch in text if ord(ch) > 0x20 and ord(ch) != 0x7F).lower()
    match = _SCHEME.match(text)
    return match.group(1) if match else ""


def is_safe_url(url: str, schemes, data_images) -> bool:
    """True for a relative URL, one of ``schemes``, or a ``data:`` URL of one of the image types ``data_images``."""
    scheme = url_scheme(url)
    if scheme == "data":
        text = "".join(ch for ch in html.unescape(url) if ord(ch) > 0x20).lower()
        return any(text.startswith(f"data:{kind};") or text.startswith(f"data:{kind},") for kind in data_images)
    return scheme == "" or scheme in schemes


# ----------------------------------------------------------------------------- Markdown

_TAG_OPEN = re.compile(r"(?<!\\)<(?=[A-Za-z/!?])")     # "\<" is a literal "<" in Markdown
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")
# A code span (a run of backticks to the same run) or math ($$…$$, $…$, \(…\), \[…\]), each at most
# 2,000 characters long, so that scanning stays linear in the length of the cell.
_INLINE = re.compile(r"(?P<code>(?P<ticks>`+)(?:(?!\n[ \t]*\n).){1,2000}?(?<!`)(?P=ticks)(?!`))"
                     r"|(?P<math>\$\$.{1,2000}?\$\$|(?<![\\$])\$(?!\s)[^$\n]{1,2000}?(?<![\s\\])\$"
                     r"|\\\(.{1,2000}?\\\)|\\\[.{1,2000}?\\\])", re.S)
_LINK_DESTINATION = re.compile(r"(\]\([ \t]*\n?[ \t]*<?)([^\s)>]*)")
_REFERENCE_DEFINITION = re.compile(r"^([ ]{0,3}\[[^\]\n]+\]:[ \t]*\n?[ \t]*<?)([^\s>]*)", re.M)
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def _fence_close(line: str, fence: str) -> bool:
    stripped = line.rstrip("\r\n")
    body = stripped.lstrip(" ")
    return (len(stripped) - len(body) <= 3 and body.rstrip(" \t").startswith(fence)
            and set(body.rstrip(" \t")) == {fence[0]})


def split_fenced_code(text: str) -> list[tuple[bool, str]]:
    """``text`` as (is_fenced_code, chunk) pieces; a fence without its closing line is not code."""
    lines = text.splitlines(keepends=True)
    pieces, prose, index = [], [], 0
    while index < len(lines):
        match = _FENCE.match(lines[index].rstrip("\r\n"))
        if match and not (match["fence"][0] == "`" and "`" in match["info"]):
            close = next((j for j in range(index + 1, len(lines)) if _fence_close(lines[j], match["fence"])), None)
            if close is not None:
                if prose:
                    pieces.append((False, "".join(prose)))
                    prose = []
                opening = lines[index]
                if match["info"].strip().lower().startswith("mermaid"):   # rendered as a diagram: shown as text
                    opening = f"{match['indent']}{match['fence']}text\n"
                pieces.append((True, opening + "".join(lines[index + 1:close + 1])))
                index = close + 1
                continue
        prose.append(lines[index])
        index += 1
    if prose:
        pieces.append((False, "".join(prose)))
    return pieces


class _AllowListChecker(HTMLParser):
    """Collects what in an HTML fragment is outside an allow-list of tags, attributes and URLs."""

    def __init__(self, tags: dict, schemes, data_images):
        super().__init__(convert_charrefs=True)
        self.tags, self.schemes, self.data_images = tags, schemes, data_images
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.tags:
            self.problems.append(f"tag <{tag}>")
            return
        for name, value in attrs:
            if name not in self.tags[tag]:
                self.problems.append(f"attribute {name} of <{tag}>")
            elif name in ("href", "src") and not is_safe_url(value or "", self.schemes, self.data_images):
                self.problems.append(f"URL {value!r} in <{tag} {name}>")
            elif name == "style" and not re.fullmatch(r"text-align:\s*(left|right|center);?", value or ""):
                self.problems.append(f"style {value!r} of <{tag}>")
            elif name == "type" and value != "checkbox":
                self.problems.append(f"type {value!r} of <{tag}>")

    handle_startendtag = handle_starttag

    def handle_comment(self, data):
        self.problems.append("an HTML comment")

    def handle_decl(self, decl):
        self.problems.append(f"a declaration <!{decl}>")

    def handle_pi(self, data):
        self.problems.append(f"a processing instruction <?{data}>")

    def unknown_decl(self, data):
        self.problems.append(f"a declaration <![{data}]>")


# What nbconvert's Markdown renderer writes for ordinary Markdown (headings with anchors, lists,
# tables, task lists, code highlighted by Pygments, images, links), tag -> its attributes.
_COMMON = ("class", "id", "title")
MARKDOWN_HTML = {
    **{tag: _COMMON for tag in ("p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote", "ul",
                               "li", "table", "thead", "tbody", "tr", "dl", "dt", "dd", "div", "span", "sup", "sub",
                               "h1", "h2", "h3", "h4", "h5", "h6")},
    "ol": (*_COMMON, "start"),
    "th": (*_COMMON, "style"),
    "td": (*_COMMON, "style"),
    "a": (*_COMMON, "href"),
    "img": (*_COMMON, "src", "alt"),
    "input": (*_COMMON, "type", "disabled", "checked"),
}


# ----------------------------------------------------------------------------- the preprocessor

class SanitizeUntrustedHTML(NbGraderPreprocessor):
    """Neutralise HTML and script that a submission put in Markdown, outputs, attachments and metadata."""

    url_schemes = List(Unicode(), default_value=["http", "https", "mailto", "attachment"],
                       help="URL schemes a link or image may use, besides relative URLs and the data: "
                            "images of data_image_types.").tag(config=True)
    data_image_types = List(Unicode(), default_value=["image/png", "image/jpeg", "image/gif"],
                            help="Image types allowed as data: URLs, as cell attachments and as outputs."
                            ).tag(config=True)
    mathjax_commands = List(Unicode(), default_value=["href", "url", "class", "cssId", "style", "data", "htmlClass",
                                                      "htmlId", "htmlStyle", "htmlData", "require", "mmlToken"],
                            help="MathJax commands (without the backslash) that make links, load extensions or set "
                                 "HTML attributes and CSS; their backslash is removed, so they read as letters."
                            ).tag(config=True)
    html_tags = List(Unicode(), default_value=[
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "div", "dl", "dt", "em",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s",
        "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
        "u", "ul", "var"],
        help="Tags kept in a sanitised HTML output or raw HTML cell; any other tag is shown as text."
    ).tag(config=True)
    html_attributes = Dict(default_value={
        "*": ["title", "style"], "a": ["href"], "img": ["src", "alt", "width", "height"],
        "td": ["colspan", "rowspan", "align"], "th": ["colspan", "rowspan", "align"], "ol": ["start"]},
        help="Attributes kept per tag ('*': on every tag) in an HTML output; no event handler belongs here."
    ).tag(config=True)
    css_properties = List(Unicode(), default_value=[
        "color", "background-color", "font-family", "font-size", "font-style", "font-weight", "opacity",
        "text-align", "text-decoration", "vertical-align", "white-space", "padding", "border"],
        help="CSS properties kept in style attributes of an HTML output; nothing that can move it over the "
             "grader's page (position, margin, transform)."
    ).tag(config=True)
    output_types_kept = List(Unicode(), default_value=["text/plain"],
                             help="Output mime types kept as they are, besides the images of data_image_types; "
                                  "text/html, text/markdown and text/latex are sanitised, every other type dropped."
                             ).tag(config=True)
    cell_metadata_keys = List(Unicode(), default_value=["nbgrader", "editable", "deletable", "raw_mimetype",
                                                        "course_verdicts"],
                              help="Cell metadata keys kept; the others (trusted, tags, jupyter, …) are removed. A "
                                   "key the grader writes before this preprocessor runs belongs here, as the "
                                   "verdicts of ApplyTrustedVerdicts do (course_verdicts, read by the class report)."
                              ).tag(config=True)
    notebook_metadata_keys = List(Unicode(), default_value=["kernelspec", "language_info", "nbgrader",
                                                            "course_review_flags"],
                                  help="Notebook metadata keys kept; the others (widgets, title, …) are removed. A "
                                       "key the grader writes before this preprocessor runs belongs here, as the "
                                       "review flags of utils/grading/review_flags.py do (course_review_flags)."
                                  ).tag(config=True)
    max_markdown_chars = Integer(50_000, help="Markdown longer than this many characters is shown as plain text, "
                                              "every punctuation mark escaped (no written answer is this long)."
                                 ).tag(config=True)
    grade_id_pattern = Unicode(r"[A-Za-z0-9_.\-]+",
                               help="Regular expression a cell's nbgrader grade_id must match in full; a cell "
                                    "whose grade_id does not loses its nbgrader metadata.").tag(config=True)

    # ------------------------------------------------------------------ notebook and cells

    @property
    def _macros(self) -> re.Pattern:
        """The MathJax commands of mathjax_commands, each as a whole command name."""
        return re.compile(r"(?<!\\)\\(" + "|".join(map(re.escape, self.mathjax_commands)) + r")(?![A-Za-z])")

    def preprocess(self, nb, resources):
        for key in list(nb.metadata):
            if key not in self.notebook_metadata_keys:
                self.log.info("Notebook metadata %r removed: only %s are kept", key, self.notebook_metadata_keys)
                del nb.metadata[key]
        for index, cell in enumerate(nb.cells):
            self._clean_metadata(cell, index)
            if cell.cell_type == "markdown":
                self._clean_attachments(cell, index)
                cell.source = self._markdown(_text(cell.source), f"cell {index}", set(cell.get("attachments") or {}))
            elif cell.cell_type == "code":
                if not isinstance(cell.get("execution_count"), int | type(None)):
                    cell.execution_count = None
                cell.outputs = [kept for kept in (self._output(o, index) for o in cell.get("outputs", []))
                                if kept is not None]
            elif cell.cell_type == "raw":
                if "html" in str(cell.metadata.get("raw_mimetype", "")).lower():
                    cell.source = self.sanitize_html(_text(cell.source))
                self._clean_attachments(cell, index)
        return nb, resources

    def _clean_metadata(self, cell, index: int) -> None:
        for key in list(cell.metadata):
            if key not in self.cell_metadata_keys:
                del cell.metadata[key]
        meta = cell.metadata.get("nbgrader")
        if meta is not None and not (isinstance(meta, dict)
                                     and re.fullmatch(self.grade_id_pattern, str(meta.get("grade_id", "")))):
            grade_id = meta.get("grade_id") if isinstance(meta, dict) else meta
            self.log.warning("Cell %d: nbgrader metadata removed: grade_id %r does not match %s",
                             index, grade_id, self.grade_id_pattern)
            del cell.metadata["nbgrader"]

    def _clean_attachments(self, cell, index: int) -> None:
        attachments = cell.get("attachments")
        if not attachments:
            return
        for name in list(attachments):
            bundle = attachments[name]
            kept = {kind: data for kind, data in (bundle.items() if isinstance(bundle, dict) else [])
                    if kind in self.data_image_types and _is_base64(data)}
            if len(kept) != (len(bundle) if isinstance(bundle, dict) else -1):
                self.log.info("Cell %d: attachment %r reduced to %s", index, name, sorted(kept) or "nothing")
            if kept:
                attachments[name] = kept
            else:
                del attachments[name]

    # ------------------------------------------------------------------ outputs

    def _output(self, output, index: int):
        kind = output.get("output_type")
        if kind == "stream":
            if output.get("name") not in ("stdout", "stderr"):
                return None
            output["text"] = _text(output.get("text", ""))
            return output
        if kind == "error":
            output["ename"], output["evalue"] = str(output.get("ename", "")), str(output.get("evalue", ""))
            output["traceback"] = [str(line) for line in output.get("traceback", []) or []]
            return output
        if kind not in ("display_data", "execute_result"):
            self.log.warning("Cell %d: output of type %r removed", index, kind)
            return None
        if kind == "execute_result" and not isinstance(output.get("execution_count"), int | type(None)):
            output["execution_count"] = None
        data = output.get("data") or {}
        data = {key: _text(value) for key, value in data.items() if isinstance(value, str | list)}
        kept, dropped = {}, sorted(set(output.get("data") or {}) - set(data))
        for mime, value in data.items():
            if mime in self.output_types_kept:
                kept[mime] = value
            elif mime in self.data_image_types and _is_base64(value):
                kept[mime] = value
            elif mime == "text/html" and "text/plain" in data and not _BARE_REPR.fullmatch(data["text/plain"].strip()):
                dropped.append(mime)     # the plain-text version says the same
            elif mime == "text/html":
                kept[mime] = self.sanitize_html(value)
            elif mime == "text/markdown":
                kept[mime] = self._markdown(value, f"cell {index}, a text/markdown output")
            elif mime == "text/latex":
                kept[mime] = self._macros.sub(r"\1", value)
            else:
                dropped.append(mime)
        if dropped:
            self.log.info("Cell %d: output types %s removed (could run script in the grader's browser)",
                          index, ", ".join(dropped))
        if not kept:
            kept["text/plain"] = (f"[output removed while grading: {', '.join(dropped) or 'empty output'} "
                                  "is not shown, because it could run script in the grader's browser]")
        output["data"] = kept
        metadata = output.get("metadata") or {}
        output["metadata"] = {mime: {k: v for k, v in metadata[mime].items()
                                     if k in ("width", "height") and isinstance(v, int | float)}
                              for mime in self.data_image_types
                              if mime in kept and isinstance(metadata.get(mime), dict)}
        return output

    def sanitize_html(self, text: str) -> str:
        """An HTML fragment reduced to html_tags, html_attributes, safe URLs and css_properties; other tags as text."""
        def allowed(tag, name, value):
            if name in ("href", "src"):
                return (name in self.html_attributes.get(tag, ())
                        and is_safe_url(value, [s for s in self.url_schemes if s != "attachment"],
                                        self.data_image_types))
            return name in self.html_attributes.get(tag, ()) or name in self.html_attributes.get("*", ())

        return bleach.clean(text, tags=set(self.html_tags), attributes=allowed,
                            protocols={"http", "https", "mailto", "data"}, strip=False, strip_comments=True,
                            css_sanitizer=CSSSanitizer(allowed_css_properties=list(self.css_properties)))

    # ------------------------------------------------------------------ Markdown

    def sanitize_markdown(self, text: str) -> str:
        """Markdown whose raw HTML reads as text, whose links are safe, and that renders to allow-listed HTML."""
        return self._markdown(text, "Markdown")

    def _markdown(self, text: str, where: str, attachments=frozenset()) -> str:
        """``text`` made safe; an ``attachment:`` URL must name one of ``attachments`` (nbconvert fails on others)."""
        if len(text) > self.max_markdown_chars:
            problems = [f"{len(text)} characters, more than max_markdown_chars = {self.max_markdown_chars}"]
        else:
            cleaned = "".join(chunk if code else self._prose(chunk, attachments)
                              for code, chunk in split_fenced_code(text))
            problems = self.markdown_problems(cleaned)
            if not problems:
                if cleaned != text:
                    self.log.info("%s: raw HTML, unsafe links or MathJax commands neutralised", where)
                return cleaned
            problems = ["after neutralising raw HTML it still renders " + "; ".join(problems[:3])]
        plain = _PUNCTUATION.sub(r"\\\1", text)
        self.log.warning("%s: shown as plain text: %s", where, problems[0])
        if not self.markdown_problems(plain):
            return plain
        return "*(This answer is not shown: it renders HTML that is not allowed. Open the submitted notebook.)*"

    def _prose(self, text: str, attachments) -> str:
        """Markdown outside fenced code: code spans kept, math and the rest neutralised."""
        out, last = [], 0
        for match in _INLINE.finditer(text):
            out.append(self._plain(text[last:match.start()], attachments))
            if match["code"]:
                out.append(match["code"])
            else:
                out.append(_TAG_OPEN.sub(r"\\lt ", self._macros.sub(r"\1", match["math"])))
            last = match.end()
        out.append(self._plain(text[last:], attachments))
        return "".join(out)

    def _plain(self, text: str, attachments) -> str:
        def destination(match):
            url = match.group(2)
            safe = is_safe_url(url, self.url_schemes, self.data_image_types)
            if safe and url_scheme(url) == "attachment":
                safe = url.startswith("attachment:") and url[len("attachment:"):] in attachments
            return match.group(1) + (url if safe else "#")

        text = _LINK_DESTINATION.sub(destination, text)
        text = _REFERENCE_DEFINITION.sub(destination, text)
        text = self._macros.sub(r"\1", text)
        return _TAG_OPEN.sub("&lt;", text)

    def markdown_problems(self, text: str) -> list[str]:
        """What, in nbconvert's HTML of the Markdown ``text``, is outside the allow-list (empty: nothing)."""
        checker = _AllowListChecker(MARKDOWN_HTML, self.url_schemes, self.data_image_types)
        # The renderer of nbconvert's markdown2html filter; every attachment it looks up is an empty PNG.
        renderer = IPythonRenderer(escape=False, attachments=_AnyAttachment())
        try:
            checker.feed(MarkdownWithMath(renderer=renderer).render(text))
            checker.close()
        except Exception as error:    # what the renderer rejects, the formgrader cannot show either
            return [f"an error of the Markdown renderer: {error}"]
        return checker.problems


class _AnyAttachment(dict):
    def __contains__(self, name):
        return True

    def __getitem__(self, name):
        return {"image/png": ""}


# The text/plain of IPython's HTML(), Markdown(), … objects, which says nothing of their content.
_BARE_REPR = re.compile(r"<[\w.]+ object(?: at 0x[0-9a-fA-F]+)?>")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _is_base64(value) -> bool:
    return isinstance(value, str | list) and re.fullmatch(r"[A-Za-z0-9+/=\s]*", _text(value)) is not None
