"""MarkdownMathToMathML: the formulas of Markdown cells as MathML, so that pages show them with no network.

nbgrader's feedback and formgrade pages would load MathJax from a CDN to typeset ``$…$``; offline
the formulas stay raw LaTeX. This preprocessor converts each formula of a Markdown cell to MathML
with ``latex2mathml`` when the page is rendered; browsers draw MathML themselves, with no script,
so it also works where scripts are off (JupyterLab's HTML viewer).

What counts as a formula is what nbconvert's Markdown renderer reads as math, outside fenced code
blocks and code spans: ``$$…$$`` and ``\\\\[…\\\\]`` (display), ``$…$`` and ``\\\\(…\\\\)`` (inline), and a
bare ``\\begin{env}…\\end{env}`` (display). Each is replaced by one line of MathML in which every
ASCII punctuation mark of a text node is a character reference, so the Markdown renderer that reads
the cell afterwards finds no emphasis, escape, link or dollar in it.

Students' Markdown is untrusted, and latex2mathml copies text such as ``\\mbox{<script>}`` into its
output unescaped. Its output is therefore parsed and written anew: only the MathML elements of
``mathml_elements`` and the attributes of ``mathml_attributes`` (values of harmless characters) are
kept, and text is escaped. A formula that does not convert (an exception, an element outside the
list, a LaTeX command latex2mathml does not know, left in the output as text) stays as its LaTeX
source, which the page shows as text; feedback generation never fails on a formula.

It runs in the HTML exporter of the formgrader and of generate_feedback
(``c.HTMLExporter.preprocessors``), after :class:`SanitizeUntrustedHTML`: the MathML it writes is
raw HTML, which that preprocessor would show as text, and the LaTeX it reads has been neutralised
there already. The autograded notebook keeps its LaTeX.
"""
from __future__ import annotations

import html
import re
import string
from html.parser import HTMLParser

from latex2mathml.converter import convert as latex_to_mathml
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Integer, List, Unicode

from utils.grading.preprocessors.sanitize_untrusted_html import split_fenced_code

MATHML_NAMESPACE = "http://www.w3.org/1998/Math/MathML"

# nbconvert's math syntax (nbconvert/filters/markdown_mistune.py, MathInlineParser), with code spans
# first so that math inside them is left alone, and no inline formula across a blank line (a
# paragraph break, where the renderer would not see one formula).
_NO_BLANK_LINE = r"(?:(?!\n[ \t]*\n).)"
_MATH = re.compile(
    rf"(?P<code>(?P<ticks>`+){_NO_BLANK_LINE}+?(?<!`)(?P=ticks)(?!`))"
    r"|(?<!\\)\$\$(?P<display_dollars>.+?)(?<!\\)\$\$"
    r"|(?<!\\)\\\\\[(?P<display_brackets>.+?)(?<!\\)\\\\\]"
    rf"|(?<![$\\])\$(?P<inline_dollar>{_NO_BLANK_LINE}+?)(?<![$\\])\$"
    r"|(?<!\\)\\\\\((?P<inline_parentheses>.+?)(?<!\\)\\\\\)"
    r"|(?P<environment>\\begin\{(?P<name>[a-z]*\*?)\}.*?\\end\{(?P=name)\})",
    re.S)
_DISPLAY_GROUPS = ("display_dollars", "display_brackets", "environment")
_INLINE_GROUPS = ("inline_dollar", "inline_parentheses")

# A LaTeX command latex2mathml did not know is copied into the output's text.
_UNKNOWN_COMMAND = re.compile(r"\\[A-Za-z]+")
# Escapes of LaTeX's text mode (\text{input\_size}), which latex2mathml copies into <mtext> as written.
_TEXT_MODE_ESCAPE = re.compile(r"\\([_{}$%&#])")


def markdown_safe_text(text: str) -> str:
    """``text`` for HTML inside Markdown: ASCII punctuation as character references, line breaks as spaces.

    A character reference is neither Markdown emphasis (``_``, ``*``), an escape (``\\``), a code span,
    a link nor math (``$``) to the Markdown renderer, and the browser shows the character itself.
    """
    return "".join(f"&#{ord(ch)};" if ch in string.punctuation else " " if ch in "\r\n" else ch
                   for ch in text)


class _MathMLWriter(HTMLParser):
    """latex2mathml's output parsed and written anew from allow-lists; ``problems`` says what did not pass."""

    def __init__(self, elements, attributes: dict, value_pattern: re.Pattern):
        super().__init__(convert_charrefs=True)
        self.elements, self.attributes, self.value_pattern = set(elements), attributes, value_pattern
        self.out: list[str] = []
        self.open: list[str] = []
        self.problems: list[str] = []
        self.roots = 0

    def handle_starttag(self, tag, attrs):
        if tag not in self.elements:
            self.problems.append(f"element <{tag}>")
            return
        if not self.open:
            self.roots += 1
            if tag != "math":
                self.problems.append(f"<{tag}> outside <math>")
        kept = []
        for name, value in attrs:
            value = value or ""
            if name == "xmlns":
                if value != MATHML_NAMESPACE:
                    self.problems.append(f"namespace {value!r}")
            elif name in self.attributes.get(tag, ()) or name in self.attributes.get("*", ()):
                if self.value_pattern.fullmatch(value):
                    kept.append(f' {name}="{html.escape(value)}"')
                else:
                    self.problems.append(f"value {value!r} of {name} on <{tag}>")
            else:
                self.problems.append(f"attribute {name} of <{tag}>")
        self.out.append(f"<{tag}{''.join(kept)}>")
        self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in self.elements:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"unbalanced </{tag}>")
            return
        self.open.pop()
        self.out.append(f"</{tag}>")

    def handle_data(self, data):
        if not self.open:
            if data.strip():
                self.problems.append(f"text {data.strip()!r} outside <math>")
            return
        if self.open[-1] == "mtext":
            data = _TEXT_MODE_ESCAPE.sub(r"\1", data)
        unknown = _UNKNOWN_COMMAND.search(data)
        if unknown:
            self.problems.append(f"the unknown command {unknown.group()}")
        elif data.strip() == "&" and self.open[-1] != "mtext":
            self.problems.append("an alignment tab '&' outside a table")
        self.out.append(markdown_safe_text(data))

    def handle_comment(self, data):
        self.problems.append("a comment")

    def handle_decl(self, decl):
        self.problems.append("a declaration")

    def handle_pi(self, data):
        self.problems.append("a processing instruction")

    def unknown_decl(self, data):
        self.problems.append("a declaration")

    def result(self) -> str:
        self.close()
        if self.open:
            self.problems.append(f"<{self.open[-1]}> not closed")
        if self.roots != 1:
            self.problems.append(f"{self.roots} <math> elements")
        return "".join(self.out)


class MarkdownMathToMathML(NbGraderPreprocessor):
    """Replace the LaTeX formulas of Markdown cells by MathML; a formula that does not convert stays LaTeX."""

    environment_aliases = Dict(
        key_trait=Unicode(), value_trait=Unicode(), default_value={"aligned": "split", "aligned*": "split"},
        help="LaTeX environments latex2mathml does not know, each converted as the one it maps to "
             "(aligned is laid out like split: right- and left-aligned columns at '&').").tag(config=True)
    max_formula_chars = Integer(
        2000, help="A formula longer than this many characters is left as LaTeX (bounds the work spent on a "
                   "submission's Markdown; the course's longest formula is a few hundred).").tag(config=True)
    mathml_elements = List(Unicode(), default_value=[
        "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "mfrac", "msqrt",
        "mroot", "msub", "msup", "msubsup", "munder", "mover", "munderover", "mmultiscripts", "mprescripts", "none",
        "mtable", "mtr", "mtd", "mstyle", "mpadded", "mphantom", "menclose", "merror", "mfenced"],
        help="MathML elements kept from latex2mathml's output; a formula that holds any other element "
             "(script, a link, foreign HTML) is left as LaTeX.").tag(config=True)
    mathml_attributes = Dict(default_value={
        "*": ["mathvariant", "displaystyle", "scriptlevel", "mathcolor", "mathbackground", "mathsize"],
        "math": ["display"],
        "mo": ["stretchy", "fence", "form", "separator", "accent", "lspace", "rspace", "largeop", "movablelimits",
               "symmetric", "minsize", "maxsize"],
        "mover": ["accent"], "munder": ["accentunder"], "munderover": ["accent", "accentunder"],
        "mspace": ["width", "height", "depth", "linebreak"],
        "mpadded": ["width", "height", "depth", "lspace", "voffset"],
        "mfrac": ["linethickness", "bevelled"],
        "mtable": ["columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines", "rowlines", "frame",
                   "framespacing", "equalrows", "equalcolumns", "align"],
        "mtr": ["columnalign", "rowalign"], "mtd": ["columnalign", "rowalign", "columnspan", "rowspan"],
        "menclose": ["notation"], "mfenced": ["open", "close", "separators"], "annotation": ["encoding"]},
        help="Attributes kept per MathML element ('*': on every element), besides xmlns, which must name "
             "MathML. A formula with any other attribute (href, style, an event handler) is left as LaTeX."
    ).tag(config=True)
    attribute_value_pattern = Unicode(
        r"[A-Za-z0-9#.%+\- ]*",
        help="Regular expression an attribute value must match in full (lengths, colours, keywords, no URL, "
             "no quote, no CSS); a formula with another value is left as LaTeX.").tag(config=True)

    def preprocess(self, nb, resources):
        converted = failed = 0
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "markdown":
                continue
            text = "".join(cell.source) if isinstance(cell.source, list) else str(cell.source)
            cell.source, done, problems = self.convert_markdown(text)
            converted += done
            failed += len(problems)
            for problem in problems:
                self.log.warning("Cell %d: a formula is left as LaTeX: %s", index, problem)
        self.log.debug("%d formulas shown as MathML, %d left as LaTeX", converted, failed)
        return nb, resources

    def convert_markdown(self, text: str) -> tuple[str, int, list[str]]:
        """``text`` with each formula outside code as MathML; also the count converted and why others were not."""
        pieces, converted, problems = [], 0, []
        for is_code, chunk in split_fenced_code(text):
            if is_code:
                pieces.append(chunk)
                continue
            last = 0
            for match in _MATH.finditer(chunk):
                pieces.append(chunk[last:match.start()])
                last = match.end()
                if match["code"]:
                    pieces.append(match["code"])
                    continue
                group = next(g for g in (*_DISPLAY_GROUPS, *_INLINE_GROUPS) if match[g] is not None)
                mathml, problem = self.to_mathml(match[group], display=group in _DISPLAY_GROUPS)
                if mathml is None:
                    problems.append(f"{problem}: {match.group()[:80]!r}")
                    pieces.append(match.group())
                else:
                    converted += 1
                    pieces.append(mathml)
            pieces.append(chunk[last:])
        return "".join(pieces), converted, problems

    def to_mathml(self, tex: str, display: bool) -> tuple[str | None, str]:
        """One formula as a line of MathML safe in Markdown, or ``None`` and the reason it is left as LaTeX."""
        if len(tex) > self.max_formula_chars:
            return None, f"{len(tex)} characters, more than max_formula_chars = {self.max_formula_chars}"
        for name, alias in self.environment_aliases.items():
            tex = tex.replace(f"\\begin{{{name}}}", f"\\begin{{{alias}}}").replace(f"\\end{{{name}}}",
                                                                                  f"\\end{{{alias}}}")
        try:
            raw = latex_to_mathml(tex, display="block" if display else "inline")
        except Exception as error:   # latex2mathml rejects what it cannot parse in many ways
            return None, f"latex2mathml failed ({type(error).__name__}: {error})"
        writer = _MathMLWriter(self.mathml_elements, self.mathml_attributes,
                               re.compile(self.attribute_value_pattern))
        try:
            writer.feed(raw)
            mathml = writer.result()
        except Exception as error:   # HTMLParser is lenient; this is only a guard
            return None, f"its MathML could not be read ({error})"
        if writer.problems:
            return None, "its MathML holds " + ", ".join(writer.problems[:3])
        return mathml, ""
