"""Mutation testing of the checks: does each check reject small, plausible changes of its own solution?

    python -m utils.instructor.mutation                          # every registered exercise
    python -m utils.instructor.mutation --assignment rnn --exercise lstm_cell
    python -m utils.instructor.mutation --list                   # the mutant ids, nothing run
    python -m utils.instructor.mutation --strict --json out.json # exit 1 on a survivor, error or stale record

For every registered check (:data:`utils.checks.registry.MODULE_OF_CHECK`) the notebook's test cell passes
an object to it; the solution cell that defines that object is parsed, and each operator of
:data:`OPERATORS` changes one thing between its ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines
(never the template around them). Each mutant is the whole cell, changed in place as text so that it reads
like the student's code, and kept only when it compiles; mutants with the same code are kept once.

A mutant runs in a copy of the notebook's solution namespace (the imports cell, then every solution
cell); its cell is executed there and the object passed to ``check_<name>(obj, hidden=True)``, under
one torch thread, its output captured. Outcomes:

* ``killed``: the check failed (a CheckFailure, also "not implemented yet", or an AssertionError);
* ``timeout``: no verdict within the time limit; counted as killed (the grader's time budget catches it);
* ``survived``: the check passed; the cases must kill it, or the mutant is recorded as equivalent;
* ``invalid``: the mutated cell fails to run or does not define the object; not counted;
* ``error``: the check itself crashed (anything but an AssertionError): a bug in the check.

The kill rate of an exercise is killed / (valid - equivalent). Equivalent mutants (no input the notebook
allows tells them from the solution) are recorded with a reason in ``equivalent_mutants/<key>.toml``
(format: ``equivalent_mutants/README.md``). A mutant's id, ``"<operator>: <line> => <mutated line>"``
(comments left out, `` #2``... where the same text repeats in one exercise), is what users see and those
files store; it does not change when other lines of the cell do.

Timings are printed, never asserted.
"""
from __future__ import annotations

import argparse
import ast
import bisect
import contextlib
import functools
import importlib
import io
import json
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import time
import tokenize
import tomllib
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import nbformat

from utils.checks.registry import CHECK_MODULES, MODULE_OF_CHECK, check_function, checks_in

from .course import REPO_ROOT
from .solutions import NotebookSolutions, solution_code

DEFAULT_TIMEOUT = 60.0
EQUIVALENTS_DIR = Path(__file__).resolve().parent / "equivalent_mutants"
STATUSES = ("killed", "timeout", "survived", "invalid", "error")

Edit = tuple[int, int, str]   # (start, end, new text): code[start:end] becomes the new text


@dataclass(frozen=True)
class Mutant:
    """One changed copy of a solution cell."""

    id: str            # "<operator>: <original line> => <mutated line>", with " #2"... for repeats
    operator: str      # a name of OPERATORS
    cell: str          # the solution cell's grade_id
    code: str          # the whole mutated cell, marker lines removed, ready to exec
    line: int          # 1-based line of the change in the notebook cell (marker lines counted)
    original: str = ""   # the changed line(s) before ...
    mutated: str = ""    # ... and after, stripped, comments left out


@dataclass(frozen=True)
class Outcome:
    status: str        # one of STATUSES
    message: str = ""  # first line of the check's failure (or pass line, or what made it invalid / crash)
    seconds: float = 0.0
    diagnosis: str = ""   # for a killed mutant: one of DIAGNOSES, what the student would be told


# What a killed mutant's feedback says beyond "it differs" (Report.diagnosis, utils/checks/feedback.py), in
# five groups: a stub left by a mutant counts as an error raised, a library call as values only.
DIAGNOSES = ("named", "described", "rule", "raised", "values")
_GROUP = {"not implemented": "raised", "from scratch": "values"}


def diagnosis_of(error: AssertionError) -> str:
    report = getattr(error, "report", None)
    if report is None:
        return "values"
    kind = report.diagnosis()
    return _GROUP.get(kind, kind)


# --------------------------------------------------------------------------- the cell, its region and offsets

def _marker(line: str) -> str:
    text = line.strip(" \t\r\n")
    return text if text in ("### BEGIN SOLUTION", "### END SOLUTION") else ""


def _strip_markers(cell_source: str) -> tuple[str, set[int], list[int]]:
    """(solution code, its lines inside a solution region, notebook-cell line of each code line)."""
    code_lines, region, cell_line, inside = [], set(), [], False
    for number, line in enumerate(cell_source.splitlines(keepends=True), start=1):
        marker = _marker(line)
        if marker:
            inside = marker == "### BEGIN SOLUTION"
            continue
        code_lines.append(line)
        cell_line.append(number)
        if inside:
            region.add(len(code_lines))
    code = "".join(code_lines)
    if code != solution_code(cell_source):
        raise ValueError("the cell's BEGIN/END SOLUTION markers are not paired as nbgrader reads them")
    return code, region, cell_line


def _mask_comments(text: str) -> str:
    """``text`` (a gap between two operands: no strings) with its comments blanked out."""
    return re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), text)


ATOMS = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set,
         ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
MODULE_NAMES = {"torch", "np", "numpy", "F", "math", "nn", "functional"}


class _Source:
    """A solution cell: its code, syntax tree, region and the helpers the operators edit it with."""

    def __init__(self, cell_source: str, excluded_lines: frozenset[int] = frozenset()):
        self.code, region, self.cell_line = _strip_markers(cell_source)
        self.region = region - excluded_lines
        self.tree = ast.parse(self.code)
        lines = self.code.splitlines(keepends=True)
        self.line_bytes = [line.encode() for line in lines]
        self.line_starts = [0]
        for line in lines:
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
        in_fstring = {sub for node in ast.walk(self.tree) if isinstance(node, ast.JoinedStr)
                      for sub in ast.walk(node)}   # positions inside f-strings are unreliable before 3.12
        self.nodes = [node for node in ast.walk(self.tree) if node not in in_fstring]
        self.claimed: set[ast.AST] = set()   # literals a specific operator owns (dim values, keepdim, modes)
        for node in self.nodes:
            if isinstance(node, ast.Call):
                self.claimed.update(_dim_literals(node))
                self.claimed.update(kw.value for kw in node.keywords
                                    if kw.arg in ("keepdim", "keepdims", "training") or kw.arg in STRING_MODES)
                if _final_name(node.func) == "train":
                    self.claimed.update(node.args)

    # positions
    def offset(self, lineno: int, col: int) -> int:
        return self.line_starts[lineno - 1] + len(self.line_bytes[lineno - 1][:col].decode("utf-8", "replace"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def text(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.code[start:end]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.line_starts, offset)

    def in_region(self, edits: list[Edit]) -> bool:
        for start, end, _ in edits:
            first, last = self.line_of(start), self.line_of(max(start, end - 1))
            if not all(line in self.region for line in range(first, last + 1)):
                return False
        return True

    def apply(self, edits: list[Edit]) -> str | None:
        ordered = sorted(edits)
        if any(a[1] > b[0] for a, b in zip(ordered, ordered[1:], strict=False)):
            return None   # overlapping edits
        code = self.code
        for start, end, text in reversed(ordered):
            code = code[:start] + text + code[end:]
        return code

    # tokens between nodes
    def find_in_gap(self, start: int, end: int, pattern: str) -> tuple[int, int] | None:
        """Absolute span of the first match of ``pattern`` in code[start:end], comments ignored."""
        match = re.search(pattern, _mask_comments(self.code[start:end]))
        return (start + match.start(), start + match.end()) if match else None

    def dot_before_attr(self, attribute: ast.Attribute) -> int:
        """Offset of the ``.`` of ``value.attr`` (after any parentheses closing the value)."""
        _, value_end = self.span(attribute.value)
        found = self.find_in_gap(value_end, self.span(attribute)[1], r"\.")
        assert found, ast.dump(attribute)
        return found[0]

    def as_operand(self, replacement: ast.AST, replaced: ast.AST) -> str:
        """The text of ``replacement`` put where ``replaced`` stands, parenthesised where the context needs it."""
        text = self.text(replacement)
        return text if isinstance(replacement, ATOMS) or self._free_context(replaced) else f"({text})"

    def _free_context(self, node: ast.AST) -> bool:
        """Whether any expression may stand where ``node`` does without parentheses."""
        parent = self.parent.get(node)
        if isinstance(parent, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Expr, ast.keyword)):
            return True
        if isinstance(parent, ast.Call):
            return node in parent.args
        if isinstance(parent, (ast.List, ast.Tuple, ast.Set)):
            return True
        return isinstance(parent, ast.Subscript) and parent.slice is node


def _final_name(func: ast.AST) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _is_module_function(call: ast.Call) -> bool:
    """``torch.sum(x, 1)``, ``np.max(...)``, ``F.softmax(...)``, ``nn.functional.relu(...)``."""
    func = call.func
    if not isinstance(func, ast.Attribute):
        return False
    value = func.value
    while isinstance(value, ast.Attribute):
        if value.attr in MODULE_NAMES:
            return True
        value = value.value
    return isinstance(value, ast.Name) and value.id in MODULE_NAMES


def _is_method_call(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and not _is_module_function(call)


def _int_literal(node: ast.AST) -> int | None:
    """The value of ``3`` or ``-1`` (not a bool), else None."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) is int):
        return -node.operand.value
    return None


def _literal_nodes(node: ast.AST) -> set[ast.AST]:
    """The Constant (and its unary minus) of an int literal."""
    if _int_literal(node) is None:
        return set()
    return {node, node.operand} if isinstance(node, ast.UnaryOp) else {node}


# --------------------------------------------------------------------------- operators

DIM_KEYWORDS = {"dim", "axis", "dims", "start_dim", "end_dim", "dim0", "dim1"}
DIM_FUNCTIONS = {"sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "softmax", "log_softmax", "cat",
                 "concat", "concatenate", "stack", "transpose", "swapaxes", "swapdims", "flatten", "unflatten",
                 "squeeze", "unsqueeze", "norm", "var", "std", "cumsum", "cumprod", "prod", "logsumexp", "all", "any",
                 "median", "nansum", "nanmean", "expand_dims", "movedim", "moveaxis"}
REDUCTION_SWAPS = {"sum": "mean", "mean": "sum", "max": "min", "min": "max", "amax": "amin", "amin": "amax",
                   "argmax": "argmin", "argmin": "argmax", "var": "std", "std": "var", "nansum": "nanmean",
                   "nanmean": "nansum", "maximum": "minimum", "minimum": "maximum"}
KEEPDIM_REDUCTIONS = {"sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "var", "std", "norm",
                      "logsumexp", "prod", "all", "any", "median", "nansum", "nanmean"}
ELEMENTWISE = {"tanh", "sigmoid", "relu", "relu6", "gelu", "silu", "elu", "selu", "leaky_relu", "softplus", "mish",
               "hardtanh", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "square", "abs",
               "absolute", "sin", "cos", "softmax", "log_softmax", "dropout", "dropout2d", "floor", "ceil", "sign",
               "reciprocal", "neg", "negative"}
TAKES_DIM = {"softmax", "log_softmax"}   # their second positional argument is a dim, not an operand
MODULE_LAYER = re.compile(r"relu|gelu|act|drop|norm|^bn|^ln|^se$|pool|sigmoid|tanh|softmax")   # self.<attr>(x)
RELU_LIKE = {"maximum", "clamp", "clamp_min", "clip"}
STRING_MODES = {"mode": ("bilinear", "nearest", "bicubic"), "padding_mode": ("zeros", "border", "reflection"),
                "indexing": ("ij", "xy"), "nonlinearity": ("tanh", "relu"), "approximate": ("none", "tanh"),
                "reduction": ("mean", "sum")}
NO_EFFECT_FLAGS = {"inplace", "need_weights"}   # documented not to change any value
SYMMETRIC = {"maximum", "minimum", "max", "min", "add", "mul", "multiply", "fmax", "fmin", "logical_and",
             "logical_or", "eq", "ne", "equal", "allclose", "isclose", "hypot", "isinstance", "print", "transpose",
             "swapaxes", "swapdims"}
CONTAINERS = {"Sequential", "ModuleList", "Compose"}
SEQUENCE_STATEMENTS = (ast.Expr, ast.AugAssign)

ARITH = {ast.Add: [ast.Sub], ast.Sub: [ast.Add], ast.Mult: [ast.Div], ast.Div: [ast.Mult, ast.FloorDiv],
         ast.FloorDiv: [ast.Div], ast.Pow: [ast.Mult], ast.MatMult: [ast.Mult]}
SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**",
          ast.MatMult: "@"}
COMPARE = {ast.Lt: (r"<(?!=)", "<="), ast.LtE: (r"<=", "<"), ast.Gt: (r">(?!=)", ">="), ast.GtE: (r">=", ">"),
           ast.Eq: (r"==", "!="), ast.NotEq: (r"!=", "=="), ast.Is: (r"\bis\b", "is not"),
           ast.IsNot: (r"\bis\s+not\b", "is"), ast.In: (r"\bin\b", "not in"), ast.NotIn: (r"\bnot\s+in\b", "in")}


def _neighbours(value: int) -> list[int]:
    """Other axes next to ``value``: 0 -> -1, 1; 1 -> 0, 2; -1 -> -2, 0; -2 -> -3, -1."""
    if value >= 0:
        return [value - 1 if value > 0 else -1, value + 1]
    return [value - 1, value + 1 if value + 1 < 0 else 0]


def _replace_int(s: _Source, node: ast.AST, value: int) -> list[Edit]:
    start, end = s.span(node)
    return [(start, end, str(value))]


def _plus_minus_one(s: _Source, node: ast.AST) -> Iterator[list[Edit]]:
    """``e`` -> ``e + 1`` and ``e - 1`` (for a bound that is not a literal: literals are `constant`'s)."""
    if node is None or _int_literal(node) is not None:
        return
    text = s.text(node)
    if not (isinstance(node, ATOMS) or (isinstance(node, ast.BinOp) and type(node.op) in SYMBOL)):
        text = f"({text})"
    start, end = s.span(node)
    yield [(start, end, f"{text} + 1")]
    yield [(start, end, f"{text} - 1")]


def arith(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """+ <-> -, * -> /, / -> * and //, // -> /, ** -> *, @ -> * (also in augmented assignments)."""
    if isinstance(node, ast.BinOp):
        before, after = s.span(node.left)[1], s.span(node.right)[0]
    elif isinstance(node, ast.AugAssign):
        before, after = s.span(node.target)[1], s.span(node.value)[0]
    else:
        return
    kind = type(node.op)
    suffix = "=" if isinstance(node, ast.AugAssign) else ""
    found = s.find_in_gap(before, after, re.escape(SYMBOL.get(kind, "\0") + suffix))
    for new in ARITH.get(kind, []):
        if found:
            yield [(found[0], found[1], SYMBOL[new] + suffix)]


def compare(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """< <-> <=, > <-> >=, == <-> !=, is <-> is not, in <-> not in; and <-> or."""
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            pattern, new = COMPARE[type(op)]
            found = s.find_in_gap(s.span(left)[1], s.span(right)[0], pattern)
            if found:
                yield [(found[0], found[1], new)]
    elif isinstance(node, ast.BoolOp):
        old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        edits = []
        for left, right in zip(node.values, node.values[1:], strict=False):
            found = s.find_in_gap(s.span(left)[1], s.span(right)[0], rf"\b{old}\b")
            if found:
                edits.append((found[0], found[1], new))
        yield edits


def _float_text(value: Decimal, scientific: bool) -> str:
    value = value.normalize()
    text = format(value, "e") if scientific else format(value, "f")
    return text if any(c in text for c in ".eE") else text + ".0"


def constant(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """Integers: 0 -> 1, 1 -> 0 and 2, n -> n - 1 and n + 1; floats: x10 and /10 (0.0 -> 1.0)."""
    if not isinstance(node, ast.Constant) or node in s.claimed or isinstance(node.value, bool):
        return
    start, end = s.span(node)
    under_minus = isinstance(s.parent.get(node), ast.UnaryOp)
    if isinstance(node.value, int):
        value = node.value
        candidates = [1] if value == 0 else [0, 2] if value == 1 else [value - 1, value + 1]
        for new in candidates:
            if new >= 0 or not under_minus:
                yield [(start, end, str(new))]
    elif isinstance(node.value, float):
        text = s.code[start:end].replace("_", "")
        scientific = "e" in text.lower()
        if node.value == 0:
            yield [(start, end, "1.0")]
            return
        try:
            value = Decimal(text)
        except ArithmeticError:
            return
        for new in (value * 10, value / 10):
            yield [(start, end, _float_text(new, scientific))]


def off_by_one(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """range(n) -> range(n + 1), range(n - 1); range(a, b): a and b each off by one."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        for bound in node.args[:2]:
            yield from _plus_minus_one(s, bound)


def slice_bound(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """x[a:b] -> x[a + 1:b], x[a - 1:b], x[a:b + 1], x[a:b - 1] (for bounds that are not literals)."""
    if isinstance(node, ast.Slice):
        yield from _plus_minus_one(s, node.lower)
        yield from _plus_minus_one(s, node.upper)


def drop_term(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """a + b -> a and b; a - b -> a and b."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub))):
        return
    start, end = s.span(node)
    found = s.find_in_gap(s.span(node.left)[1], s.span(node.right)[0], re.escape(SYMBOL[type(node.op)]))
    if not found:
        return
    left, right = s.code[start:found[0]].strip(), s.code[found[1]:end].strip()
    yield [(start, end, left)]
    yield [(start, end, right)]


def reduction(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """sum <-> mean, max <-> min, amax <-> amin, argmax <-> argmin, var <-> std (methods and torch./np.
    functions), builtin max <-> min, reduction="mean" <-> "sum"."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in REDUCTION_SWAPS:
            end = s.span(func)[1]
            if s.code[end - len(func.attr):end] == func.attr:
                yield [(end - len(func.attr), end, REDUCTION_SWAPS[func.attr])]
        elif isinstance(func, ast.Name) and func.id in ("max", "min"):
            start, end = s.span(func)
            yield [(start, end, "min" if func.id == "max" else "max")]
        for kw in node.keywords:
            if kw.arg == "reduction":
                yield from _string_choices(s, kw.value, STRING_MODES["reduction"])


def _dim_literals(call: ast.Call) -> set[ast.AST]:
    """The int literals of a call that name axes: dim=/axis= values, positional dims of DIM_FUNCTIONS."""
    found = set()
    for kw in call.keywords:
        if kw.arg in DIM_KEYWORDS:
            values = kw.value.elts if isinstance(kw.value, (ast.Tuple, ast.List)) else [kw.value]
            for value in values:
                found |= _literal_nodes(value)
    if _final_name(call.func) in DIM_FUNCTIONS and isinstance(call.func, ast.Attribute):
        for arg in call.args[0 if _is_method_call(call) else 1:]:
            found |= _literal_nodes(arg)
    return found


def axis(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """dim=/axis= values (also each in a tuple) and positional dims (x.sum(1), torch.cat(xs, 1), transpose(1, 2),
    softmax(x, -1), flatten(x, 1), ...) moved to a neighbouring axis (k -> k - 1, k + 1; -1 <-> -2, -1 -> 0);
    einsum: two adjacent output subscripts swapped."""
    if not isinstance(node, ast.Call):
        return
    for literal in _dim_literals(node):
        if isinstance(literal, ast.Constant) and isinstance(s.parent.get(literal), ast.UnaryOp):
            continue   # the unary minus node stands for it
        for new in _neighbours(_int_literal(literal)):
            yield _replace_int(s, literal, new)
    if (_final_name(node.func) == "einsum" and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str) and "->" in node.args[0].value):
        spec = node.args[0].value
        inputs, output = spec.split("->")
        start, end = s.span(node.args[0])
        quote = s.code[start]
        for i in range(len(output) - 1):
            swapped = output[:i] + output[i + 1] + output[i] + output[i + 2:]
            yield [(start, end, f"{quote}{inputs}->{swapped}{quote}")]


def keepdim(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """keepdim=True <-> False (keepdims too); keepdim=True added to a reduction over an axis."""
    if not isinstance(node, ast.Call):
        return
    for kw in node.keywords:
        if kw.arg in ("keepdim", "keepdims") and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value,
                                                                                                     bool):
            start, end = s.span(kw.value)
            yield [(start, end, str(not kw.value.value))]
    name = _final_name(node.func)
    if name not in KEEPDIM_REDUCTIONS or any(kw.arg in ("keepdim", "keepdims") for kw in node.keywords):
        return
    keywords = {kw.arg for kw in node.keywords}
    module = node.func.value.id if isinstance(node.func, ast.Attribute) and isinstance(node.func.value,
                                                                                       ast.Name) else ""
    if "axis" in keywords or (module in ("np", "numpy") and len(node.args) >= 2):
        word = "keepdims"
    elif "dim" in keywords or (module == "torch" and len(node.args) >= 2):
        word = "keepdim"
    else:
        return   # no axis, or an axis whose library this cannot tell
    last = max(s.span(part)[1] for part in [*node.args, *node.keywords])
    yield [(last, last, f", {word}=True")]


def swap_args(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """f(a, b) -> f(b, a): each two adjacent positional arguments (not of symmetric functions)."""
    if not isinstance(node, ast.Call) or _final_name(node.func) in SYMMETRIC:
        return
    for left, right in zip(node.args, node.args[1:], strict=False):
        if isinstance(left, ast.Starred) or isinstance(right, ast.Starred):
            continue
        left_text, right_text = s.text(left), s.text(right)
        if left_text != right_text:
            yield [(*s.span(left), right_text), (*s.span(right), left_text)]


def _string_choices(s: _Source, value: ast.AST, choices: tuple[str, ...]) -> Iterator[list[Edit]]:
    if isinstance(value, ast.Constant) and value.value in choices:
        start, end = s.span(value)
        quote = s.code[start]
        for other in choices:
            if other != value.value:
                yield [(start, end, f"{quote}{other}{quote}")]


def mode(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """.train() <-> .eval(), .train(False) <-> .train(True), training=True <-> False, no_grad <-> enable_grad,
    and the string modes of STRING_MODES (mode="bilinear" -> "nearest", indexing="ij" -> "xy", ...)."""
    if isinstance(node, ast.Call):
        name = _final_name(node.func)
        if name in ("train", "eval") and isinstance(node.func, ast.Attribute) and not node.args:
            end = s.span(node.func)[1]
            yield [(end - len(name), end, "eval" if name == "train" else "train")]
        flags = [arg for arg in node.args if name == "train"] + [kw.value for kw in node.keywords
                                                                  if kw.arg == "training"]
        for flag in flags:
            if isinstance(flag, ast.Constant) and isinstance(flag.value, bool):
                yield [(*s.span(flag), str(not flag.value))]
        for kw in node.keywords:
            if kw.arg in STRING_MODES and kw.arg != "reduction":
                yield from _string_choices(s, kw.value, STRING_MODES[kw.arg])
    elif isinstance(node, ast.Attribute) and node.attr in ("no_grad", "enable_grad"):
        end = s.span(node)[1]
        yield [(end - len(node.attr), end, "enable_grad" if node.attr == "no_grad" else "no_grad")]


def unary_call(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """An element-wise call removed: torch.tanh(x) -> x, F.relu(x) -> x, x.exp() -> x, np.maximum(x, 0) -> x,
    x.clamp(min=0) -> x, self.dropout(x) -> x (module calls whose name is an activation, norm, pool or dropout)."""
    if not isinstance(node, ast.Call) or any(isinstance(arg, ast.Starred) for arg in node.args):
        return
    name = _final_name(node.func)
    start, end = s.span(node)
    method = _is_method_call(node)
    on_self = (method and isinstance(node.func.value, (ast.Name, ast.Attribute))
               and ast.unparse(node.func.value).split(".")[0] == "self")
    if on_self:
        if len(node.args) == 1 and not node.keywords and MODULE_LAYER.search(name):
            yield [(start, end, s.as_operand(node.args[0], node))]
        return
    operands = [arg for arg in node.args if _int_literal(arg) is None and not isinstance(arg, ast.Constant)]
    if name in RELU_LIKE:
        literal_bounds = [arg for arg in node.args if isinstance(arg, ast.Constant)] + [
            kw for kw in node.keywords if kw.arg in ("min", "max")]
        if method and not node.args[1:] and literal_bounds:
            yield [(s.dot_before_attr(node.func), end, "")]
        elif not method and len(operands) == 1 and literal_bounds:
            yield [(start, end, s.as_operand(operands[0], node))]
        return
    if name not in ELEMENTWISE:
        return
    if method:
        if len(node.args) <= (1 if name in TAKES_DIM else 0):
            yield [(s.dot_before_attr(node.func), end, "")]
    elif node.args and len(node.args) <= (2 if name in TAKES_DIM else 1):
        yield [(start, end, s.as_operand(node.args[0], node))]


def negate(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """Unary -, not and ~ removed; `not` added to the test of an if, while or conditional expression;
    a unary minus added to each returned value."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not, ast.Invert)):
        if node in s.claimed or node.operand in s.claimed:
            return
        start = s.span(node)[0]
        yield [(start, s.span(node.operand)[0], "")]
    elif isinstance(node, (ast.If, ast.While, ast.IfExp)):
        test = node.test
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return   # removing the `not` is the mutant
        text = s.text(test)
        start, end = s.span(test)
        yield [(start, end, f"not {text}" if isinstance(test, (*ATOMS, ast.Compare)) else f"not ({text})")]
    elif isinstance(node, ast.Return) and node.value is not None:
        values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
        for value in values:
            if isinstance(value, (ast.Constant, ast.Tuple, ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp,
                                  ast.SetComp, ast.GeneratorExp, ast.Lambda, ast.JoinedStr)):
                continue
            if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub):
                continue
            text = s.text(value)
            start, end = s.span(value)
            yield [(start, end, f"-{text}" if isinstance(value, ATOMS) else f"-({text})")]


def bool_flip(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """True <-> False (but not flags that change no value: inplace=, need_weights=)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, bool) and node not in s.claimed:
        parent = s.parent.get(node)
        if isinstance(parent, ast.keyword) and parent.arg in NO_EFFECT_FLAGS:
            return
        yield [(*s.span(node), str(not node.value))]


def drop_statement(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """An expression statement (optimizer.zero_grad(), loss.backward(), xs.append(x)), an augmented assignment
    (x += y) or an assignment into an element (x[i] = v) deleted (replaced by `pass`)."""
    if isinstance(node, ast.Expr):
        value = node.value
        if isinstance(value, ast.Constant) or (isinstance(value, ast.Call) and _final_name(value.func) == "print"):
            return
    elif isinstance(node, ast.Assign):
        if not all(isinstance(target, ast.Subscript) for target in node.targets):
            return
    elif not isinstance(node, ast.AugAssign):
        return
    yield [(*s.span(node), "pass")]


def drop_layer(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """One layer of nn.Sequential(...) / nn.ModuleList([...]) / transforms.Compose([...]) removed."""
    if not isinstance(node, ast.Call) or _final_name(node.func) not in CONTAINERS:
        return
    if node.args and isinstance(node.args[0], ast.List):
        items = node.args[0].elts
    elif _final_name(node.func) == "Sequential":
        items = node.args
    else:
        return
    if len(items) < 2 or any(isinstance(item, ast.Starred) for item in items):
        return
    for i, item in enumerate(items):
        if i + 1 < len(items):
            yield [(s.span(item)[0], s.span(items[i + 1])[0], "")]
        else:
            yield [(s.span(items[i - 1])[1], s.span(item)[1], "")]


def _adjacent_swaps(s: _Source, elements: list[ast.AST]) -> Iterator[list[Edit]]:
    for left, right in zip(elements, elements[1:], strict=False):
        if isinstance(left, ast.Starred) or isinstance(right, ast.Starred):
            continue
        left_text, right_text = s.text(left), s.text(right)
        if left_text != right_text:
            yield [(*s.span(left), right_text), (*s.span(right), left_text)]


def return_order(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """return a, b -> return b, a (each two adjacent values, also inside a returned tuple)."""
    if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
        pending = [node.value]
        while pending:
            values = pending.pop(0).elts
            yield from _adjacent_swaps(s, values)
            pending.extend(value for value in values if isinstance(value, ast.Tuple))


def unpack_order(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """a, b = ... -> b, a = ... (assignments, for loops, comprehensions): each two adjacent names."""
    targets = []
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        targets = [node.targets[0]]
    elif isinstance(node, (ast.For, ast.comprehension)):
        targets = [node.target]
    pending = [t for t in targets if isinstance(t, (ast.Tuple, ast.List))]
    while pending:
        elements = pending.pop(0).elts
        yield from _adjacent_swaps(s, elements)
        pending.extend(e for e in elements if isinstance(e, (ast.Tuple, ast.List)))


def transpose(node: ast.AST, s: _Source) -> Iterator[list[Edit]]:
    """x.T, x.mT, x.t(), x.transpose(a, b), x.permute(...), x.swapaxes(a, b) -> x; torch.transpose(x, a, b),
    np.transpose(x) -> x."""
    if isinstance(node, ast.Attribute) and node.attr in ("T", "mT") and isinstance(node.ctx, ast.Load):
        yield [(s.dot_before_attr(node), s.span(node)[1], "")]
    elif isinstance(node, ast.Call) and _final_name(node.func) in ("t", "transpose", "permute", "swapaxes",
                                                                   "swapdims"):
        if _is_method_call(node):
            yield [(s.dot_before_attr(node.func), s.span(node)[1], "")]
        elif node.args:
            yield [(*s.span(node), s.as_operand(node.args[0], node))]


# The operators, in the order they claim a mutant two of them would make alike.
OPERATORS: dict[str, Callable[[ast.AST, _Source], Iterator[list[Edit]]]] = {
    "mode": mode,
    "keepdim": keepdim,
    "axis": axis,
    "reduction": reduction,
    "transpose": transpose,
    "unary_call": unary_call,
    "arith": arith,
    "compare": compare,
    "drop_term": drop_term,
    "off_by_one": off_by_one,
    "slice_bound": slice_bound,
    "constant": constant,
    "bool_flip": bool_flip,
    "negate": negate,
    "swap_args": swap_args,
    "return_order": return_order,
    "unpack_order": unpack_order,
    "drop_statement": drop_statement,
    "drop_layer": drop_layer,
}


# --------------------------------------------------------------------------- generating mutants

def _comments(code: str) -> dict[int, str]:
    """line -> its comment (from the ``#`` on)."""
    comments = {}
    with contextlib.suppress(tokenize.TokenError, SyntaxError):
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string
    return comments


def _lines_text(lines: list[str], first: int, last: int, comments: set[str]) -> str:
    """Lines first..last as one line: each stripped, the ``comments`` ending them and empty lines left out.

    The operators never touch a comment, so a mutated line ends with the comment its original line had.
    """
    parts = []
    for line in lines[first - 1:last]:
        line = line.rstrip()
        for comment in comments:
            if line.endswith(comment):
                line = line[:-len(comment)]
                break
        if line.strip():
            parts.append(line.strip())
    return " ".join(parts)


def generate(cell_source: str, cell: str = "cell", operators: list[str] | None = None,
             excluded_lines: frozenset[int] = frozenset()) -> list[Mutant]:
    """Every mutant of a notebook cell (markers included) the operators make inside its solution region.

    Deterministic: in source order, then operator order; two mutants with the same code are kept once
    (the first operator's); a mutant that does not compile is dropped.
    """
    s = _Source(cell_source, excluded_lines)
    chosen = OPERATORS if operators is None else {name: OPERATORS[name] for name in operators}
    found: dict[str, tuple[tuple, str, list[Edit]]] = {s.code: ((), "", [])}
    sequence = 0
    for rank, (name, operator) in enumerate(OPERATORS.items()):
        if name not in chosen:
            continue
        for node in s.nodes:
            for edits in operator(node, s):
                sequence += 1
                if not edits or not s.in_region(edits):
                    continue
                code = s.apply(edits)
                if code is None or code in found:
                    continue
                try:
                    compile(code, "<mutant>", "exec", dont_inherit=True)
                except (SyntaxError, ValueError):
                    continue
                found[code] = ((min(e[0] for e in edits), rank, sequence), name, edits)
    del found[s.code]
    result, seen = [], Counter()
    lines, comments = s.code.splitlines(), _comments(s.code)
    for code, (_, name, edits) in sorted(found.items(), key=lambda item: item[1][0]):
        start, end = min(e[0] for e in edits), max(max(e[0], e[1] - 1) for e in edits)
        first, last = s.line_of(start), s.line_of(end)
        added = sum(e[2].count("\n") for e in edits) - sum(s.code[e[0]:e[1]].count("\n") for e in edits)
        nearby = {comments[n] for n in range(first, last + 1) if n in comments}
        original = _lines_text(lines, first, last, nearby)
        mutated = _lines_text(code.splitlines(), first, last + added, nearby) or "<deleted>"
        text = f"{name}: {original} => {mutated}"
        seen[text] += 1
        ident = text if seen[text] == 1 else f"{text} #{seen[text]}"
        result.append(Mutant(id=ident, operator=name, cell=cell, code=code, line=s.cell_line[first - 1],
                             original=original, mutated=mutated))
    return result


# --------------------------------------------------------------------------- exercises, cells, namespaces

@dataclass(frozen=True)
class Target:
    check: str          # check_<name>
    module: str         # utils.rnn
    notebook: str       # rnn/rnn
    argument: str       # what the test cell passes: the student's object
    cell: str           # grade_id of the solution cell that defines it
    source: str         # that cell as the notebook holds it (markers included)
    excluded: frozenset[int] = frozenset()   # code lines defining another checked object of the same cell

    @property
    def exercise(self) -> str:
        return self.check[len("check_"):]

    @property
    def key(self) -> str:
        return assignment_key(self.module)


def assignment_key(module: str) -> str:
    """utils.cnn.layers -> cnn_layers: the name of its equivalents file."""
    return module.removeprefix("utils.").replace(".", "_")


ASSIGNMENT_KEYS = {assignment_key(module): module for module in CHECK_MODULES}


def _source_path(notebook: str) -> Path:
    return REPO_ROOT / "source" / f"{notebook}.ipynb"


@functools.cache
def _calls_in(notebook: str) -> dict[str, str]:
    """check name -> the argument the notebook's autograded test cells pass it."""
    nb = nbformat.read(_source_path(notebook), as_version=4)
    calls = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            for name, argument in checks_in(cell.source):
                calls.setdefault(name, argument)
    return calls


def _top_level_names(code: str) -> dict[str, list[ast.stmt]]:
    """name -> the top-level statements of ``code`` that define it (def, class, assignment)."""
    names: dict[str, list[ast.stmt]] = {}
    for statement in ast.parse(code).body:
        defined = []
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined = [statement.name]
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            defined = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        for name in defined:
            names.setdefault(name, []).append(statement)
    return names


@functools.cache
def _solutions(notebook: str) -> NotebookSolutions:
    return NotebookSolutions(_source_path(notebook))


@functools.cache
def target(check_name: str) -> Target:
    """Where ``check_name``'s object comes from: its notebook, the argument, the solution cell defining it."""
    module = MODULE_OF_CHECK.get(check_name)
    if module is None:
        raise KeyError(f"no exercise is registered for {check_name!r}")
    notebook = CHECK_MODULES[module].notebook
    calls = _calls_in(notebook)
    argument = calls.get(check_name)
    if argument is None:
        raise LookupError(f"no test cell of {notebook}.ipynb calls {check_name}")
    wanted = {n.id for n in ast.walk(ast.parse(argument, mode="eval")) if isinstance(n, ast.Name)}
    solutions = _solutions(notebook)
    for cell, source in solutions.sources.items():
        defined = _top_level_names(solutions.cells[cell])
        if wanted & set(defined):
            others = {calls[name] for name in calls if name != check_name} & set(defined) - wanted
            excluded = frozenset(line for other in others for statement in defined[other]
                                 for line in range(statement.lineno, statement.end_lineno + 1))
            return Target(check_name, module, notebook, argument, cell, source, excluded)
    raise LookupError(f"no solution cell of {notebook}.ipynb defines {argument} (passed to {check_name})")


@functools.cache
def _mutants(check_name: str) -> tuple[Mutant, ...]:
    t = target(check_name)
    return tuple(generate(t.source, t.cell, excluded_lines=t.excluded))


def mutants(check_name: str) -> list[Mutant]:
    """The mutants of the solution of ``check_name`` (e.g. "check_lstm_cell"), in a stable order."""
    return list(_mutants(check_name))


_NAMESPACES: dict[str, dict] = {}


def solution_namespace(notebook: str) -> dict:
    """The notebook's imports cell and every solution cell run (torch's thread count kept), cached."""
    if notebook not in _NAMESPACES:
        import torch
        threads = torch.get_num_threads()
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _NAMESPACES[notebook] = NotebookSolutions(_source_path(notebook), imports=True).run()
        finally:
            torch.set_num_threads(threads)
    return _NAMESPACES[notebook]


class _Timeout(BaseException):
    """Raised by the alarm: a BaseException, so that the check's ``except Exception`` lets it through."""


@contextlib.contextmanager
def _alarm(seconds: float):
    def ring(signum, frame):
        raise _Timeout()
    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {Path(frame.filename).name}:{frame.lineno}, in {frame.name})"


def run_mutant(check_name: str, mutant: Mutant, timeout: float = DEFAULT_TIMEOUT) -> Outcome:
    """Run ``check_<name>(obj, hidden=True)`` on the object the mutated cell defines; see the module doc."""
    import torch
    t = target(check_name)
    try:
        namespace = dict(solution_namespace(t.notebook))
    except Exception as exc:   # the unmutated notebook does not run: nothing can be judged
        return Outcome("error", f"the solution notebook does not run: {type(exc).__name__}: {_first_line(exc)}"
                                f"{_where(exc)}")
    for name in _top_level_names(solution_code(t.source)):
        namespace.pop(name, None)   # the mutated cell must define them again
    check = check_function(check_name)
    threads = torch.get_num_threads()
    shown = io.StringIO()
    start = time.perf_counter()

    def outcome(status: str, message: str, diagnosis: str = "") -> Outcome:
        return Outcome(status, message, round(time.perf_counter() - start, 4), diagnosis)

    torch.set_num_threads(1)
    try:
        with _alarm(timeout), contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                exec(compile(mutant.code, f"<mutant of {t.cell}>", "exec"), namespace)
                obj = eval(t.argument, namespace)
            except (_Timeout, KeyboardInterrupt):
                raise
            except BaseException as exc:   # noqa: B036 - SystemExit from a mutant is its own failure
                return outcome("invalid", f"{type(exc).__name__}: {_first_line(exc)}")
            try:
                check(obj, hidden=True)
            except AssertionError as exc:
                return outcome("killed", _first_line(exc), diagnosis_of(exc))
            except Exception as exc:
                return outcome("error", f"{type(exc).__name__}: {_first_line(exc)}{_where(exc)}")
            return outcome("survived", _first_line(shown.getvalue()))
    except _Timeout:
        return outcome("timeout", f"no verdict within {timeout:g} s")
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- running many, in processes

_STATE_DIR: Path | None = None


def _init_worker(state_dir: str) -> None:
    global _STATE_DIR
    import torch
    torch.set_num_threads(1)
    _STATE_DIR = Path(state_dir)


def _work(index: int, check_name: str, mutant: Mutant, timeout: float) -> tuple[int, Outcome]:
    """A worker's task; it notes which mutant it runs, so that the one that kills the process is known."""
    if _STATE_DIR is not None:
        (_STATE_DIR / str(os.getpid())).write_text(str(index))
    return index, run_mutant(check_name, mutant, timeout)


def _pool_round(indices: list[int], tasks: list[tuple[str, Mutant]], jobs: int, timeout: float,
                results: dict[int, Outcome], progress: Callable[[int, Outcome], None]) -> list[int] | None:
    """Run ``indices`` in ``jobs`` fresh processes. None when the pool held; else the mutants that were
    running when a process died (one of them killed it)."""
    module = importlib.import_module("utils.instructor.mutation")   # by its importable name, not __main__
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch"])   # each worker starts with torch imported
    with tempfile.TemporaryDirectory(prefix="mutation-") as state, \
            ProcessPoolExecutor(max_workers=min(jobs, len(indices)), mp_context=context,
                                initializer=module._init_worker, initargs=(state,)) as pool:
        futures = {pool.submit(module._work, i, *tasks[i], timeout): i for i in indices}
        broken = False
        for future in as_completed(futures):
            try:
                index, outcome = future.result()
            except BrokenProcessPool:
                broken = True
                continue
            except Exception as exc:   # a bug of this tool in the worker: reported with the mutant, not a crash
                index, outcome = futures[future], Outcome("error", f"{type(exc).__name__}: {_first_line(exc)}")
            results[index] = outcome
            progress(index, outcome)
        if not broken:
            return None
        running = {int(note.read_text()) for note in Path(state).iterdir() if note.read_text()}
        return sorted(running - set(results))


def _run_in_pool(tasks: list[tuple[str, Mutant]], jobs: int, timeout: float,
                 progress: Callable[[int, Outcome], None]) -> dict[int, Outcome]:
    results: dict[int, Outcome] = {}
    pending = list(range(len(tasks)))
    while pending:
        suspects = _pool_round(pending, tasks, jobs, timeout, results, progress)
        for index in suspects or ():   # alone, a suspect that kills its process again is the culprit
            if _pool_round([index], tasks, 1, timeout, results, progress) is not None:
                results[index] = Outcome("killed", "the process running the check died")
                progress(index, results[index])
        left = [i for i in pending if i not in results]
        if len(left) == len(pending):   # no progress at all: the workers cannot start
            for index in left:
                results[index] = Outcome("error", "no worker process could run it")
                progress(index, results[index])
        pending = [i for i in left if i not in results]
    return results


def run_all(tasks: list[tuple[str, Mutant]], jobs: int, timeout: float,
            progress: Callable[[int, Outcome], None] = lambda i, o: None) -> list[Outcome]:
    """The outcome of each (check name, mutant), in order: in this process (jobs=1) or in ``jobs`` processes."""
    if jobs <= 1:
        outcomes = []
        for index, (check_name, mutant) in enumerate(tasks):
            outcomes.append(run_mutant(check_name, mutant, timeout))
            progress(index, outcomes[-1])
        return outcomes
    results = _run_in_pool(tasks, jobs, timeout, progress)
    return [results[i] for i in range(len(tasks))]


# --------------------------------------------------------------------------- equivalent mutants

@dataclass(frozen=True)
class Equivalent:
    key: str          # assignment key: the file's stem
    exercise: str
    id: str
    reason: str


def load_equivalents(directory: Path = EQUIVALENTS_DIR) -> list[Equivalent]:
    """Every record of ``<directory>/<key>.toml``; a malformed file or record raises ValueError."""
    records = []
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as why:
            raise ValueError(f"{path.name}: {why}") from None
        unknown = set(data) - {"mutant"}
        if unknown:
            raise ValueError(f"{path.name}: only [[mutant]] tables belong here, found {sorted(unknown)}")
        for number, entry in enumerate(data.get("mutant", []), start=1):
            fields = {"exercise", "id", "reason"}
            if not isinstance(entry, dict) or set(entry) != fields or not all(
                    isinstance(entry[f], str) and entry[f].strip() for f in fields):
                raise ValueError(f"{path.name}, [[mutant]] #{number}: needs exactly exercise, id and reason, "
                                 f"each a non-empty string; found {entry!r}")
            records.append(Equivalent(path.stem, entry["exercise"], entry["id"], entry["reason"].strip()))
    return records


def _record_problems(records: list[Equivalent]) -> list[tuple[str | None, str]]:
    """(exercise or None, what is wrong) for each faulty record."""
    problems, seen = [], set()
    for record in records:
        where = f"{record.key}.toml: {record.exercise}: {record.id!r}"
        module = ASSIGNMENT_KEYS.get(record.key)
        if module is None:
            problems.append((None, f"{record.key}.toml is no assignment's file "
                                   f"(expected one of {', '.join(ASSIGNMENT_KEYS)})"))
            continue
        check_name = f"check_{record.exercise}"
        if MODULE_OF_CHECK.get(check_name) != module:
            problems.append((None, f"{where}: {record.exercise} is not an exercise of {module}"))
            continue
        if (record.exercise, record.id) in seen:
            problems.append((record.exercise, f"{where}: recorded twice"))
        seen.add((record.exercise, record.id))
        if record.id not in {m.id for m in _mutants(check_name)}:
            problems.append((record.exercise, f"{where}: stale, no such mutant is generated any more"))
    return problems


def equivalent_problems(records: list[Equivalent]) -> list[str]:
    """What is wrong with the records: a file or exercise not registered, an id no longer generated, a repeat."""
    return [text for _, text in _record_problems(records)]


# --------------------------------------------------------------------------- the report

@dataclass
class Row:
    key: str
    exercise: str
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def valid(self) -> int:
        return sum(self.counts.values()) - self.counts["invalid"]

    @property
    def killed(self) -> int:   # timeouts included
        return self.counts["killed"] + self.counts["timeout"]

    def rate(self) -> str:
        denominator = self.valid - self.counts["equivalent"]
        return f"{100 * self.killed / denominator:.1f}%" if denominator else "-"

    def line(self, label: str) -> str:
        c = self.counts
        return (f"{label:<36} {self.valid:>6} {self.killed:>7} {c['timeout']:>7} {c['equivalent']:>6} "
                f"{c['survived']:>8} {c['error']:>6} {c['invalid']:>8} {self.rate():>9} {self.seconds:>8.1f}")


HEADER = (f"{'assignment / exercise':<36} {'valid':>6} {'killed':>7} {'timeout':>7} {'equiv':>6} {'survived':>8} "
          f"{'error':>6} {'invalid':>8} {'kill rate':>9} {'check s':>8}")


def summarize(results: list[tuple[Target, Mutant, Outcome]], equivalents: dict[tuple[str, str], str]) -> dict:
    """Rows per exercise, assignment and in total; survivors, errors and contested equivalents.

    ``equivalents``: (exercise, id) -> reason. A recorded mutant that survives counts as equivalent; one the
    check kills is contested (the record is wrong, or the check rejects a correct answer).
    """
    rows: dict[tuple[str, str], Row] = {}
    survivors, errors, contested, timeouts = [], [], [], []
    diagnoses: dict[str, Counter] = {}
    for t, mutant, outcome in results:
        row = rows.setdefault((t.key, t.exercise), Row(t.key, t.exercise))
        if outcome.status == "killed":
            diagnoses.setdefault(t.key, Counter())[outcome.diagnosis or "values"] += 1
        recorded = (t.exercise, mutant.id) in equivalents
        status = outcome.status
        if status == "survived" and recorded:
            status = "equivalent"
        elif status in ("killed", "timeout") and recorded:
            contested.append((t, mutant, outcome))
        if status == "survived":
            survivors.append((t, mutant, outcome))
        elif status == "error":
            errors.append((t, mutant, outcome))
        elif status == "timeout":
            timeouts.append((t, mutant, outcome))
        row.counts[status] += 1
        row.seconds += outcome.seconds
    assignments: dict[str, Row] = {}
    total = Row("", "total")
    for row in rows.values():
        for aggregate in (assignments.setdefault(row.key, Row(row.key, "")), total):
            aggregate.counts.update(row.counts)
            aggregate.seconds += row.seconds
    return {"rows": rows, "assignments": assignments, "total": total, "survivors": survivors, "errors": errors,
            "contested": contested, "timeouts": timeouts, "diagnoses": diagnoses}


def format_diagnoses(summary: dict) -> str:
    """What the killed mutants' feedback says, per assignment: how often a student making that change is told
    a named cause, a described difference, a rule, the error raised, or only the values."""
    lines = [f"{'what a killed mutant is told':<22} " + " ".join(f"{d:>10}" for d in DIAGNOSES)]
    total = Counter()
    for key, counts in summary["diagnoses"].items():
        total.update(counts)
        lines.append(_diagnosis_line(key, counts))
    lines.append(_diagnosis_line("total", total))
    return "\n".join(lines)


def _diagnosis_line(label: str, counts: Counter) -> str:
    n = sum(counts.values()) or 1
    return f"{label:<22} " + " ".join(f"{100 * counts[d] / n:>9.1f}%" for d in DIAGNOSES)


def format_table(summary: dict) -> str:
    lines = [HEADER]
    by_key: dict[str, list[Row]] = {}
    for row in summary["rows"].values():
        by_key.setdefault(row.key, []).append(row)
    for key, rows in by_key.items():
        lines.append(key)
        lines.extend(row.line(f"  {row.exercise}") for row in rows)
        lines.append(summary["assignments"][key].line(f"  {key} (all)"))
    lines.append(summary["total"].line("total"))
    return "\n".join(lines)


def strict_failures(summary: dict, stale: list[str]) -> list[str]:
    reasons = []
    if summary["survivors"]:
        reasons.append(f"{len(summary['survivors'])} mutant(s) survive unrecorded")
    if summary["errors"]:
        reasons.append(f"{len(summary['errors'])} check error(s)")
    if summary["contested"]:
        reasons.append(f"{len(summary['contested'])} recorded equivalent(s) killed")
    if stale:
        reasons.append(f"{len(stale)} stale or malformed equivalent record(s)")
    return reasons


def _listing(title: str, items: list[tuple[Target, Mutant, Outcome]], out) -> None:
    if not items:
        return
    print(f"\n{title} ({len(items)}):", file=out)
    for t, mutant, outcome in items:
        print(f"  {t.key}/{t.exercise} [cell {t.cell}, line {mutant.line}]", file=out)
        print(f"    {mutant.id}", file=out)
        print(f"    check: {outcome.message or outcome.status}", file=out)


# --------------------------------------------------------------------------- command line

def select(assignments: list[str] | None, exercises: list[str] | None) -> list[str]:
    """The check names chosen by assignment keys and exercise names (with or without ``check_``)."""
    unknown = sorted(set(assignments or ()) - set(ASSIGNMENT_KEYS))
    if unknown:
        raise ValueError(f"unknown assignment {', '.join(unknown)}; choose from {', '.join(ASSIGNMENT_KEYS)}")
    wanted = {name if name.startswith("check_") else f"check_{name}" for name in exercises or ()}
    unknown = sorted(wanted - set(MODULE_OF_CHECK))
    if unknown:
        raise ValueError(f"unknown exercise {', '.join(unknown)}")
    return [name for name in MODULE_OF_CHECK
            if (not assignments or assignment_key(MODULE_OF_CHECK[name]) in assignments)
            and (not wanted or name in wanted)]


def main(argv: list[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.mutation",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--assignment", action="append", metavar="KEY",
                        help=f"only these assignments ({', '.join(ASSIGNMENT_KEYS)})")
    parser.add_argument("--exercise", action="append", metavar="NAME", help="only these exercises (lstm_cell)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="worker processes")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per mutant (default 60)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every mutant's outcome here")
    parser.add_argument("--list", action="store_true", help="print the mutant ids, run nothing")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 on a surviving unrecorded mutant, a check error or a stale equivalent record")
    args = parser.parse_args(argv)
    try:
        checks = select(args.assignment, args.exercise)
    except ValueError as why:
        parser.error(str(why))

    started = time.perf_counter()
    targets = {name: target(name) for name in checks}
    generated = {name: mutants(name) for name in checks}
    if args.list:
        for name in checks:
            t = targets[name]
            print(f"{t.key}/{t.exercise} (cell {t.cell}): {len(generated[name])} mutants", file=out)
            for mutant in generated[name]:
                print(f"  {mutant.id}", file=out)
        print(f"{sum(map(len, generated.values()))} mutants of {len(checks)} exercises, "
              f"generated in {time.perf_counter() - started:.1f} s", file=out)
        return 0

    try:
        records = load_equivalents()
        problems = _record_problems(records)
    except ValueError as why:
        records, problems = [], [(None, str(why))]
    chosen_exercises = {targets[name].exercise for name in checks}
    records = [r for r in records if r.exercise in chosen_exercises]
    problems = [text for exercise, text in problems if exercise is None or exercise in chosen_exercises]
    equivalents = {(r.exercise, r.id): r.reason for r in records}

    tasks = [(name, mutant) for name in checks for mutant in generated[name]]
    remaining = Counter(name for name, _ in tasks)
    tallies: dict[str, Counter] = {name: Counter() for name in checks}
    print(f"Mutation testing: {len(tasks)} mutants of {len(checks)} exercises, {args.jobs} job(s), "
          f"timeout {args.timeout:g} s per mutant", file=out, flush=True)

    def progress(index: int, outcome: Outcome) -> None:
        name = tasks[index][0]
        remaining[name] -= 1
        tallies[name][outcome.status] += 1
        if remaining[name] == 0:
            tally = ", ".join(f"{n} {s}" for s, n in sorted(tallies[name].items()))
            print(f"  [{time.perf_counter() - started:7.1f} s] {targets[name].key}/{targets[name].exercise}: {tally}",
                  file=sys.stderr, flush=True)

    outcomes = run_all(tasks, args.jobs, args.timeout, progress)
    elapsed = time.perf_counter() - started
    results = [(targets[name], mutant, outcome) for (name, mutant), outcome in zip(tasks, outcomes, strict=False)]
    summary = summarize(results, equivalents)
    print(format_table(summary), file=out)
    print("\n" + format_diagnoses(summary), file=out)
    _listing("Surviving mutants: kill each with a case, or record it in "
             "utils/instructor/equivalent_mutants/<key>.toml with the reason it is equivalent",
             summary["survivors"], out)
    _listing("CHECK ERRORS (the check crashed: a bug in the check)", summary["errors"], out)
    _listing("Recorded as equivalent, yet killed (remove the record, or the check rejects a correct answer)",
             summary["contested"], out)
    _listing("Timeouts (counted as killed)", summary["timeouts"], out)
    if problems:
        print(f"\nStale or malformed equivalent records ({len(problems)}):", file=out)
        for problem in problems:
            print(f"  {problem}", file=out)
    print(f"\nelapsed {elapsed:.1f} s wall with {args.jobs} job(s); {summary['total'].seconds:.1f} s running "
          f"checks", file=out)
    if args.json:
        args.json.write_text(json.dumps({
            "elapsed_s": round(elapsed, 2), "jobs": args.jobs, "timeout_s": args.timeout,
            "exercises": {f"{row.key}/{row.exercise}": {**row.counts, "valid": row.valid, "killed_total": row.killed,
                                                         "kill_rate": row.rate()}
                          for row in summary["rows"].values()},
            "stale": problems,
            "mutants": [{"assignment": t.key, "exercise": t.exercise, "check": t.check, **asdict(mutant),
                         "equivalent": equivalents.get((t.exercise, mutant.id)), **asdict(outcome)}
                        for t, mutant, outcome in results],
        }, indent=1, ensure_ascii=False))
    failures = strict_failures(summary, problems)
    if args.strict and failures:
        print(f"--strict: {'; '.join(failures)}", file=out)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
