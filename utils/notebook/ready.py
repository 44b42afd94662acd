"""``ready(...)``: a demo or figure cell asks whether the student functions it uses are written.

A demo cell that calls an unfinished answer would print a long traceback from the stub's
``raise NotImplementedError()``. Instead it starts with::

    if ready("patch_embed_linear", "patch_embed_conv"):
        ...                      # the demo

and, while one of them is missing or still the stub, prints one line saying which to finish first.
"""
from __future__ import annotations

import ast
import inspect
import linecache
import sys
import textwrap
from collections.abc import Iterable

from utils.checks.registry import CHECK_MODULES


def ready(*names: str) -> bool:
    """True when every function or class in ``names`` is defined and written, in the caller's namespace.

    Otherwise print one line naming the answers to finish (with their notebook section) and return
    False. "Written" means the cell that defines it holds no function that ends in
    ``raise NotImplementedError()`` any more; whether it is right is for its check to say.
    """
    namespace = sys._getframe(1).f_globals
    missing = [name for name in names if name not in namespace]
    unfinished = [name for name in names if name in namespace and is_unfinished(namespace[name])]
    if missing:
        print(f"⏸ Run the cell that defines {_listed(missing)} first ({_where(missing)}): "
              "this cell uses it.")
        return False
    if unfinished:
        print(f"⏸ Finish {_listed(unfinished)} first ({_where(unfinished)}): this cell uses "
              f"{'it' if len(unfinished) == 1 else 'them'}.")
        return False
    return True


def is_unfinished(obj) -> bool:
    """Whether the cell (or file) that defines ``obj`` still contains a stub function body.

    The whole defining cell is read, not only ``obj``: a ``ViT`` built from an ``EncoderBlock`` in
    the same answer cell is unfinished while the block is.
    """
    source = _defining_source(obj)
    if source is None:
        return False
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return False
    return any(_is_stub(node) for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _is_stub(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A body that ends in an unconditional ``raise NotImplementedError``: it can never return.

    The release's stubs are that line alone, or after ``super().__init__()``; an answer written above
    a stub line that was left in is unfinished too.
    """
    last = function.body[-1]
    if not isinstance(last, ast.Raise) or last.exc is None:
        return False
    raised = last.exc.func if isinstance(last.exc, ast.Call) else last.exc
    return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"


def _defining_source(obj) -> str | None:
    """The text of the notebook cell (or module) that defined ``obj``; None when it cannot be found."""
    code = None
    if inspect.isclass(obj):
        for member in vars(obj).values():
            function = getattr(member, "__func__", member)
            if inspect.isfunction(function):
                code = function.__code__
                break
    elif inspect.isfunction(obj):
        code = obj.__code__
    if code is None:
        return None
    lines = linecache.getlines(code.co_filename)    # IPython keeps every cell's text here
    return "".join(lines) or None


def _listed(names: Iterable[str]) -> str:
    quoted = [f"`{name}`" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _where(names: list[str]) -> str:
    """The notebook sections of ``names``' exercises, from the checks already imported."""
    sections = []
    for name in names:
        section = section_of(name)
        if section and section not in sections:
            sections.append(section)
    if not sections:
        return "above"
    quoted = [f"“{s}”" for s in sections]
    if len(quoted) == 1:
        return f"section {quoted[0]} above"
    return "sections " + ", ".join(quoted[:-1]) + " and " + quoted[-1] + " above"


def section_of(function_name: str) -> str:
    """The section of the exercise whose answer is ``function_name``, among the imported assignments.

    Only modules the notebook already imported are searched: a NumPy notebook must not import an
    assignment that imports torch.
    """
    for module_name in CHECK_MODULES:
        module = sys.modules.get(module_name)
        for exercise in getattr(module, "EXERCISES", {}).values():
            if exercise.function == function_name and exercise.section:
                return exercise.section
    return ""
