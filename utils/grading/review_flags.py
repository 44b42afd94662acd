"""Review flags: code in a submitted notebook that an instructor should look at, with the line as evidence.

The from-scratch rule is enforced while the student's function runs (:mod:`utils.checks.from_scratch`):
a forbidden operation fails the case. But a process cannot watch everything that happens in itself:
code can run in another process, through ctypes, compiled before the check, switch a watch off
and on again, or read the grading inputs and precompute answers at the top of a cell. Such code
leaves traces in the notebook, so the grader reads every code cell the student wrote or changed
(``ast``, never run; cells the student added too) and flags the constructs that evade the rule or
read grading internals (:data:`RULES`).

A flag is evidence for a human, not a verdict: it never changes a grade by itself. Flags are written
to the autograded notebook's metadata (:data:`FLAGS_KEY`, :func:`store_flags`), listed for each
assignment by ``python -m utils.instructor.review_flags``, and shown in the student's feedback
(:func:`review_text`).

Used by the trusted grader (``ApplyTrustedVerdicts``) after the kernel ran, once the test cells have
their sources back::

    flags = flag_submission(nb, student=student, notebook="rnn/rnn", source_notebook=path)  # also stored
    text = review_text(flags_for(flags, exercise.function))   # a check's feedback; "" when none
    text = review_text(other_flags(flags, functions))         # the rest: top level, helpers
"""
from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from utils.checks.registry import CHECK_MODULES
from utils.checks.registry import exercise as find_exercise

FLAGS_KEY = "course_review_flags"   # notebook metadata: a list of ReviewFlag fields
MAX_FLAGS = 200                     # per notebook; one more says how many were left out
MAX_CELL_CHARS = 1_000_000          # longer cells are flagged as too long to read, not parsed
EVIDENCE_CHARS = 200                # the offending line, shortened to this

RULES = {
    "forbidden-api": "names the library function this exercise is compared with",
    "dispatcher-ops": "calls torch's operators directly (torch.ops / aten), around the check's watch",
    "compiled-code": "compiles code (TorchScript, torch.compile, fx, export), which hides the operations it runs",
    "torch-internals": "uses torch's private internals (torch._C or a name starting with _)",
    "watch-tampering": "changes the profilers or tracers the check watches library calls with",
    "native-code": "calls native code directly (ctypes / cffi)",
    "introspection": "inspects the interpreter's objects or frames (gc, frames, __globals__, __code__, ...)",
    "module-tampering": "changes or reads the table of imported modules (sys.modules, import hooks)",
    "dynamic-import": "imports modules by a computed name (importlib, __import__)",
    "course-internals": "imports the course's checking code beyond the check_* functions, ready and progress",
    "grading-files": "refers to the grader's files (.grading, the inputs, the secret, compiled course code)",
    "reads-pickles": "reads pickled data (the grading inputs are pickled)",
    "file-listing": "lists the files of a folder",
    "ipython-hooks": "changes how the notebook's cells run (IPython transformers, events, magics)",
    "dynamic-code": "runs code built from strings (exec, eval, compile)",
    "dynamic-attribute": "looks up an attribute of a module by a computed name",
    "patches-module": "assigns to an attribute of an imported module (monkeypatching)",
    "thread-or-process": "runs code in another thread, process or shell, out of the check's sight",
    "unreadable-cell": "the cell could not be read, so it was not reviewed",
    "too-many-flags": "more flags than are kept; the rest were left out",
}

# Imported modules (or any module under them) -> rule.
_MODULE_RULES = {
    "ctypes": "native-code", "_ctypes": "native-code", "cffi": "native-code",
    "threading": "thread-or-process", "_thread": "thread-or-process", "multiprocessing": "thread-or-process",
    "concurrent": "thread-or-process", "subprocess": "thread-or-process", "pty": "thread-or-process",
    "torch.multiprocessing": "thread-or-process",
    "importlib": "dynamic-import", "imp": "dynamic-import", "runpy": "dynamic-import", "pkgutil": "dynamic-import",
    "zipimport": "dynamic-import",
    "gc": "introspection", "inspect": "introspection", "builtins": "introspection", "marshal": "introspection",
    "pickle": "reads-pickles", "_pickle": "reads-pickles", "dill": "reads-pickles", "cloudpickle": "reads-pickles",
    "joblib": "reads-pickles", "shelve": "reads-pickles",
    "glob": "file-listing",
    "torch.jit": "compiled-code", "torch._dynamo": "compiled-code", "torch.fx": "compiled-code",
    "torch.export": "compiled-code", "torch.compiler": "compiled-code", "torch._inductor": "compiled-code",
    "torch.utils.cpp_extension": "native-code",
    "torch.ops": "dispatcher-ops",
    "torch.profiler": "watch-tampering", "torch.autograd.profiler": "watch-tampering",
}
# Dotted names used in code (after import aliases are resolved) -> rule; a name under one counts too.
_NAME_RULES = {
    **_MODULE_RULES,
    "torch.compile": "compiled-code",
    "torch.autograd._enable_record_function": "watch-tampering",
    "sys.setprofile": "watch-tampering", "sys.settrace": "watch-tampering", "sys.getprofile": "watch-tampering",
    "sys.gettrace": "watch-tampering", "sys.monitoring": "watch-tampering", "sys.addaudithook": "watch-tampering",
    "threading.setprofile": "watch-tampering", "threading.settrace": "watch-tampering",
    "threading.setprofile_all_threads": "watch-tampering", "threading.settrace_all_threads": "watch-tampering",
    "torch.nn.modules.module": "watch-tampering",
    "sys.modules": "module-tampering", "sys.meta_path": "module-tampering", "sys.path_hooks": "module-tampering",
    "sys.path_importer_cache": "module-tampering",
    "sys._getframe": "introspection",
    "os.fork": "thread-or-process", "os.forkpty": "thread-or-process", "os.system": "thread-or-process",
    "os.popen": "thread-or-process", "os.posix_spawn": "thread-or-process", "os.posix_spawnp": "thread-or-process",
    "os.execv": "thread-or-process", "os.execve": "thread-or-process", "os.execl": "thread-or-process",
    "os.execlp": "thread-or-process", "os.execvp": "thread-or-process", "os.spawnv": "thread-or-process",
    "os.spawnl": "thread-or-process",
    "os.listdir": "file-listing", "os.scandir": "file-listing", "os.walk": "file-listing",
}
_INTROSPECTION_ATTRIBUTES = {
    "__globals__", "__code__", "__closure__", "__dict__", "__builtins__", "__subclasses__", "__getattribute__",
    "__loader__", "__spec__", "__import__", "__kwdefaults__", "__defaults__", "__wrapped__", "__self__",
    "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "gi_frame", "cr_frame", "tb_frame", "tb_next",
}
_FILE_LISTING_METHODS = {"iterdir", "glob", "rglob"}
_IPYTHON_ATTRIBUTES = {
    "input_transformers_cleanup", "input_transformers_post", "ast_transformers", "input_transformer_manager",
    "events", "register_magic_function", "register_magics", "set_custom_exc", "set_hook", "run_cell",
    "run_cell_async", "run_code", "ex", "ev", "push", "kernel", "user_ns", "user_global_ns", "showtraceback",
}
_SHELL_CALLS = {"system", "getoutput", "system_raw", "system_piped"}
_SAFE_MAGICS = {"matplotlib", "time", "timeit", "precision", "pprint", "who", "whos", "config"}
_GRADING_STRINGS = (".grading", "inputs.pkl", "outputs.npz", "outputs.json", "grading_secret", "gradebook",
                    "__pycache__", ".pyc", "autograded", "submitted/")
_DYNAMIC_CODE = {"exec", "eval", "compile"}


@dataclass(frozen=True)
class ReviewFlag:
    """One line of a submitted notebook that an instructor should review."""

    student: str
    notebook: str       # "rnn/rnn": <assignment>/<notebook>
    cell: str           # the cell's nbgrader grade_id, or its cell id, or "cell <index>"
    cell_index: int     # position among the notebook's cells, from 0
    line: int           # line in the cell, from 1 (0: the whole cell)
    rule: str           # a key of RULES
    evidence: str       # the offending line, shortened
    function: str = ""  # the top-level function or class the line is in ("" at the top level)

    def describe(self) -> str:
        where = f"{self.cell}, line {self.line}" if self.line else self.cell
        inside = f" (in {self.function})" if self.function else ""
        return f"{where}{inside}: {RULES.get(self.rule, self.rule)} — `{self.evidence}`"


def _clip(text: str, limit: int = EVIDENCE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _transformed(source: str) -> str:
    """The cell as Python: IPython's magics and shell escapes become the calls IPython makes of them."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:   # without IPython, a cell with magics is flagged as unreadable
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:   # a malformed cell is parsed as it is
        return source


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


class _Aliases:
    """What each module alias of the notebook stands for: ``F`` -> ``torch.nn.functional``."""

    def __init__(self):
        self.names: dict[str, str] = {}
        self.ipython = {"get_ipython"}   # names that hold the IPython shell: `ip = get_ipython()`

    def learn(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                called = self.dotted(node.value.func)
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
                if called == "get_ipython":
                    self.ipython.update(targets)
                elif called in ("importlib.import_module", "__import__"):   # a module imported by name
                    self.names.update({name: "<imported by name>" for name in targets})
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.names[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.names[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.names[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def dotted(self, node: ast.AST) -> str:
        """``torch.nn.functional.conv2d`` for ``F.conv2d``; "" when the chain does not start at a name."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return ""
        parts.append(self.names.get(node.id, node.id))
        return ".".join(reversed(parts))

    def is_module(self, name: str) -> bool:
        return name in self.names


# What a notebook imports from utils besides its checks (utils/notebook/): a demo cell's guard, the overview.
NOTEBOOK_HELPERS = ("ready", "progress")


def _notebook_name(name: str) -> bool:
    """A name of ``utils`` that notebooks use: a ``check_*`` function or a notebook helper."""
    return name.startswith("check_") or name in NOTEBOOK_HELPERS


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _rule_of_name(name: str) -> str:
    best = ""
    for prefix in _NAME_RULES:
        if _under(name, prefix) and len(prefix) > len(best):
            best = prefix
    if best:
        return _NAME_RULES[best]
    parts = name.split(".")
    if parts[0] in ("torch", "torchvision") and any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
        return "torch-internals"
    return ""


def _rule_of_module(module: str) -> str:
    best = ""
    for prefix in _MODULE_RULES:
        if _under(module, prefix) and len(prefix) > len(best):
            best = prefix
    return _MODULE_RULES[best] if best else _rule_of_name(module)


class _Exercises:
    """The notebook's exercises: which library names each forbids, and which of the student's
    top-level definitions each one reaches (calls, directly or through other definitions)."""

    def __init__(self, check_names: Iterable[str]):
        self.forbidden: dict[str, set[str]] = {}   # exercise function -> forbidden last names
        for check in check_names:
            try:
                exercise = find_exercise(check)
            except KeyError:
                continue
            self.forbidden.setdefault(exercise.function, set()).update(
                path.rsplit(".", 1)[-1] for path in exercise.forbidden)
        self.everything = set().union(*self.forbidden.values()) if self.forbidden else set()
        self.by_definition: dict[str, set[str]] = {}

    def learn_reach(self, definitions: dict[str, ast.AST]) -> None:
        uses = {name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & set(definitions)
                for name, node in definitions.items()}
        for function, names in self.forbidden.items():
            seen, todo = set(), [function]
            while todo:
                current = todo.pop()
                if current in seen or current not in definitions:
                    continue
                seen.add(current)
                todo.extend(uses[current])
            for name in seen:
                self.by_definition.setdefault(name, set()).update(names)

    def names_for(self, definition: str) -> set[str]:
        """Forbidden names in a top-level definition (those of the exercises reaching it), or at the top level."""
        return self.by_definition.get(definition, set()) if definition else self.everything


class _Scanner:
    """The flags of one parsed cell."""

    def __init__(self, aliases: _Aliases, exercises: _Exercises, own_names: set[str]):
        self.aliases, self.exercises, self.own_names = aliases, exercises, own_names
        self.found: list[tuple[int, str, str, str]] = []   # (line, rule, function, a string it builds)

    def scan(self, tree: ast.Module) -> None:
        for statement in tree.body:
            definition = statement.name if isinstance(
                statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ""
            forbidden = self.exercises.names_for(definition)
            # At the top level (demo code: `lstm = nn.LSTM(...)`), a library class or function called
            # there is not evidence; taken as a value (an alias, functools.partial) it is.
            called = set() if definition else {id(n.func) for n in ast.walk(statement) if isinstance(n, ast.Call)}
            folded_parts = set()   # the inner pieces of a string built with +, read once as a whole
            for node in ast.walk(statement):
                if id(node) in folded_parts:
                    continue
                built = _folded(node) if isinstance(node, ast.BinOp) else None
                if built is not None:
                    folded_parts.update(id(n) for n in ast.walk(node))
                    rules = self._string_rules(built, forbidden, built=True)
                else:
                    rules = self._rules(node, forbidden)
                    if isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[1], ast.BinOp):
                        built = _folded(node.args[1])   # getattr(module, "name_" + "built")
                for rule in rules:
                    if rule == "forbidden-api" and id(node) in called:
                        continue
                    self.found.append((getattr(node, "lineno", 0), rule, definition, built or ""))

    def _rules(self, node: ast.AST, forbidden: set[str]) -> list[str]:
        rules = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                rules += [self._import_rule(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0:
                rules.append(self._import_rule(module))
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    rules.append(_rule_of_module(full))
                    if _under(module, "utils") and not (module == "utils" and _notebook_name(alias.name)):
                        rules.append("course-internals")
                    if alias.name in forbidden:
                        rules.append("forbidden-api")
        elif isinstance(node, ast.Attribute):
            rules += self._attribute_rules(node, forbidden)
        elif isinstance(node, ast.Call):
            rules += self._call_rules(node, forbidden)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(_root(target), ast.Name) \
                        and self.aliases.is_module(_root(target).id):
                    rules.append("patches-module")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            rules += self._string_rules(node.value, forbidden)
        elif isinstance(node, ast.Name) and node.id in ("__builtins__", "__import__", "__loader__", "__spec__"):
            rules.append("introspection" if node.id != "__import__" else "dynamic-import")
        return [rule for rule in rules if rule]

    def _import_rule(self, module: str) -> str:
        if _under(module, "utils"):
            return "course-internals" if module != "utils" else ""
        return _rule_of_module(module)

    def _attribute_rules(self, node: ast.Attribute, forbidden: set[str]) -> list[str]:
        rules = []
        dotted = self.aliases.dotted(node)
        if dotted:
            rules.append(_rule_of_name(dotted))
            parts = dotted.split(".")
            if parts[0] == "utils" and self.aliases.is_module("utils") and not _notebook_name(parts[1]):
                rules.append("course-internals")   # import utils; utils.checks.registry...
        if node.attr in forbidden:
            rules.append("forbidden-api")
        if node.attr == "aten" or (node.attr == "ops" and dotted.startswith("torch")):
            rules.append("dispatcher-ops")
        if node.attr in _INTROSPECTION_ATTRIBUTES:
            rules.append("introspection")
        if node.attr in _FILE_LISTING_METHODS:
            rules.append("file-listing")
        if node.attr in _IPYTHON_ATTRIBUTES and self._from_ipython(node):
            rules.append("ipython-hooks")
        return rules

    def _from_ipython(self, node: ast.AST) -> bool:
        root = _root(node)
        return isinstance(root, ast.Name) and root.id in self.aliases.ipython

    def _call_rules(self, node: ast.Call, forbidden: set[str]) -> list[str]:
        rules = []
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in _DYNAMIC_CODE:
                rules.append("dynamic-code")
            elif func.id == "__import__":
                rules.append("dynamic-import")
            elif func.id in ("globals", "vars") and not node.args:
                rules.append("introspection")
            elif func.id in ("getattr", "setattr", "delattr") and len(node.args) >= 2:
                name, target = node.args[1], _root(node.args[0])
                # Of a module, or of something computed; not of the student's own objects (getattr(model, name)).
                on_module = not isinstance(target, ast.Name) or self.aliases.is_module(target.id)
                constant = isinstance(name, ast.Constant) and isinstance(name.value, str)
                if on_module and not constant:
                    rules.append("dynamic-attribute")
                if constant and name.value in forbidden:   # getattr(F, "conv2d") is F.conv2d
                    rules.append("forbidden-api")
                if func.id != "getattr" and isinstance(target, ast.Name) and self.aliases.is_module(target.id):
                    rules.append("patches-module")
        elif isinstance(func, ast.Attribute) and self._from_ipython(func):
            if func.attr in _SHELL_CALLS:
                rules.append("thread-or-process")
            elif func.attr in ("run_line_magic", "run_cell_magic", "magic"):
                magic = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
                if magic not in _SAFE_MAGICS:
                    rules.append("ipython-hooks")
        return rules

    def _string_rules(self, value: str, forbidden: set[str], built: bool = False) -> list[str]:
        """Rules of a string constant, or of one the code builds from pieces (``built``: "lstm" + "_cell")."""
        rules = []
        if any(marker in value for marker in _GRADING_STRINGS):
            rules.append("grading-files")
        if value in forbidden and (built or value not in self.own_names):
            rules.append("forbidden-api")
        if _under(value, "utils") and value != "utils" or "utils/" in value:
            rules.append("course-internals")
        if value.startswith("aten::") or value == "aten":
            rules.append("dispatcher-ops")
        return rules


def _folded(node: ast.AST) -> str | None:
    """The string a ``+`` of string constants builds ("utils.x." + "comp" + "utations"), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _folded(node.left), _folded(node.right)
        if left is not None and right is not None and len(left) + len(right) <= 10_000:
            return left + right
    return None


def _cell_name(cell, index: int) -> str:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    if isinstance(grade_id, str) and grade_id:
        return _clip(grade_id, 80)
    cell_id = cell.get("id")
    return _clip(f"cell {cell_id}", 80) if isinstance(cell_id, str) and cell_id else f"cell {index}"


def _parse(source: str) -> ast.Module:
    """The cell's syntax tree, with line numbers of the cell as written."""
    try:
        return ast.parse(source)
    except SyntaxError:
        pass
    tree = ast.parse(_transformed(source))   # magics; IPython drops the leading blank lines first
    lines = source.splitlines()
    blank = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    if blank:
        ast.increment_lineno(tree, blank)
    return tree


def instructor_sources(source_notebook: Path) -> frozenset[str]:
    """The code of every code cell of the instructor's source notebook: a submitted cell whose code is
    exactly one of these (a locked cell, a test cell put back by the grader) is the course's, not reviewed."""
    nb = json.loads(Path(source_notebook).read_text())
    return frozenset(_source_text(cell) for cell in nb.get("cells", []) if cell.get("cell_type") == "code")


def _source_text(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def review_notebook(nb, *, student: str, notebook: str, check_names: Iterable[str],
                    instructor_sources: Iterable[str] = ()) -> list[ReviewFlag]:
    """The flags of a submitted notebook: every code cell whose code is not the instructor's is read.

    ``check_names``: the notebook's ``check_*`` names (what each exercise forbids, and its function's
    name); ``instructor_sources``: code cells of the source notebook (:func:`instructor_sources`).
    """
    skip = set(instructor_sources)
    cells = [(index, cell) for index, cell in enumerate(nb.get("cells", [])) if cell.get("cell_type") == "code"]
    aliases, exercises = _Aliases(), _Exercises(check_names)
    parsed: list[tuple[int, object, ast.Module | None, str]] = []   # (index, cell, tree, why unreadable)
    for index, cell in cells:
        source = _source_text(cell)
        tree, why = None, ""
        if len(source) > MAX_CELL_CHARS:
            why = f"{len(source):,} characters (more than {MAX_CELL_CHARS:,})"
        else:
            try:
                tree = _parse(source)
            except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                why = f"{type(exc).__name__}: {exc}"
        if tree is not None:
            aliases.learn(tree)   # the instructor's imports cell names the aliases student code uses
        if source not in skip:
            parsed.append((index, cell, tree, why))
    definitions = {node.name: node for _, _, tree, _ in parsed if tree is not None for node in tree.body
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    exercises.learn_reach(definitions)
    own_names = set(definitions) | set(exercises.forbidden)

    flags: list[ReviewFlag] = []
    seen: set[tuple[int, int, str]] = set()
    for index, cell, tree, why in parsed:
        name = _cell_name(cell, index)
        if tree is None:
            flags.append(ReviewFlag(student, notebook, name, index, 0, "unreadable-cell", _clip(why)))
            continue
        scanner = _Scanner(aliases, exercises, own_names)
        scanner.scan(tree)
        lines = _source_text(cell).splitlines()
        for line, rule, function, built in sorted(scanner.found):
            if (index, line, rule) in seen:
                continue
            seen.add((index, line, rule))
            evidence = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            if built:   # what the pieces spell, for the reader
                evidence = f"{_clip(evidence, EVIDENCE_CHARS // 2)} (builds {_clip(built, EVIDENCE_CHARS // 3)!r})"
            flags.append(ReviewFlag(student, notebook, name, index, line, rule, _clip(evidence), function))
    if len(flags) > MAX_FLAGS:
        left_out = len(flags) - MAX_FLAGS
        flags = flags[:MAX_FLAGS] + [ReviewFlag(student, notebook, "", -1, 0, "too-many-flags",
                                                f"{left_out} more flags left out")]
    return flags


def notebook_checks(notebook: str) -> list[str]:
    """The ``check_*`` names of a notebook ("rnn/rnn"), from the registry."""
    return [f"check_{name}" for entry in CHECK_MODULES.values() if entry.notebook == notebook
            for name in entry.exercises]


def flag_submission(nb, *, student: str, notebook: str, source_notebook: Path) -> list[ReviewFlag]:
    """Review a submitted notebook ("<assignment>/<notebook>") against its source notebook, keep the flags in
    its metadata (:func:`store_flags`) and return them."""
    flags = review_notebook(nb, student=student, notebook=notebook, check_names=notebook_checks(notebook),
                            instructor_sources=instructor_sources(source_notebook))
    store_flags(nb, flags)
    return flags


def store_flags(nb, flags: list[ReviewFlag]) -> None:
    """Keep the flags in the autograded notebook's metadata, where the instructor's list reads them."""
    nb.metadata[FLAGS_KEY] = [asdict(flag) for flag in flags]


def stored_flags(metadata) -> list[ReviewFlag]:
    """The flags a notebook's metadata holds; malformed entries (the file is the grader's, but it is
    read back from disk) are skipped, and every text is shortened."""
    entries = metadata.get(FLAGS_KEY, []) if isinstance(metadata, dict) else []
    names = {f.name for f in fields(ReviewFlag)}
    flags = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or set(entry) != set(names):
            continue
        values = {}
        for key, value in entry.items():
            if key in ("cell_index", "line"):
                if not isinstance(value, int) or isinstance(value, bool):
                    break
                values[key] = value
            else:
                if not isinstance(value, str):
                    break
                values[key] = _clip(value)
        else:
            flags.append(ReviewFlag(**values))
    return flags


def flags_for(flags: list[ReviewFlag], function: str) -> list[ReviewFlag]:
    """The flags inside ``function`` (an exercise's function or class)."""
    return [flag for flag in flags if flag.function == function]


def other_flags(flags: list[ReviewFlag], functions: Iterable[str]) -> list[ReviewFlag]:
    """The flags in none of ``functions`` (the notebook's exercises): at the top level, or in helpers."""
    functions = set(functions)
    return [flag for flag in flags if flag.function not in functions]


def review_text(flags: list[ReviewFlag]) -> str:
    """What the student's feedback says about these flags ("" when there are none)."""
    if not flags:
        return ""
    lines = [f"⚑ Flagged for review by an instructor: {len(flags)} line(s) of your code use constructs that can "
             "get around the from-scratch rule or read the grader's files. This does not change the points above "
             "by itself; an instructor will look at it."]
    lines += [f"  {flag.describe()}" for flag in flags]
    return "\n".join(lines)
