"""The package's layers keep their import rules, and no module imports itself back through others.

Read statically (every ``import`` in a module, at any depth), so a rule holds even for code paths a
test never runs:

* the check core (``utils.checks``) imports no assignment package, nothing of ``utils.grading`` or
  ``utils.instructor``, and not nbgrader;
* an assignment package imports the core and itself only; ``utils.vit`` may also import
  ``utils.attention.mha`` (ViT is built on that one attention implementation);
* what runs in the student's kernel (``utils.grading.in_kernel``) imports the core, never nbgrader,
  the rest of ``utils.grading`` or the instructor tools;
* the notebook helpers (``utils.notebook``: ``ready``, ``progress``) import the core and themselves
  only, never torch (the NumPy notebooks call them);
* what bubblewrap runs by path (``utils.grading.in_sandbox``) imports the standard library only;
* nothing outside ``utils.instructor`` imports ``utils.instructor``;
* there is no import cycle between modules.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import utils

PACKAGE = Path(utils.__file__).resolve().parent
ASSIGNMENTS = ("utils.deformable_conv", "utils.cnn", "utils.rnn", "utils.attention", "utils.vit")


def module_name(path: Path) -> str:
    parts = ("utils",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = {f"{base}.{alias.name}" for alias in node.names}
            submodules = {n for n in names if (PACKAGE.parent / (n.replace(".", "/") + ".py")).is_file()}
            found.update(submodules or {base})   # `from pkg import submodule` is an import of the submodule
            found.update(names - submodules)
    return found


MODULES = {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def course_imports(module: str) -> set[str]:
    """The modules of this package that ``module`` imports (names that are attributes are left out)."""
    return {name for name in MODULES[module] if name in MODULES and name != module}


def layer_of(module: str) -> str:
    for package in ("utils.checks", "utils.notebook", "utils.grading.in_kernel", "utils.grading.in_sandbox",
                    "utils.grading", "utils.instructor", *ASSIGNMENTS):
        if inside(module, package):
            return package
    return module


@pytest.mark.parametrize("module", sorted(m for m in MODULES if inside(m, "utils.checks")))
def test_the_core_imports_no_assignment_grader_or_nbgrader(module):
    for name in MODULES[module]:
        assert not any(inside(name, p) for p in (*ASSIGNMENTS, "utils.grading", "utils.instructor", "nbgrader")), \
            f"{module} imports {name}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) in ASSIGNMENTS))
def test_an_assignment_imports_the_core_and_itself_only(module):
    own = layer_of(module)
    allowed = [own, "utils.checks"] + (["utils.attention.mha"] if own == "utils.vit" else [])
    for name in course_imports(module) | {n for n in MODULES[module] if n.startswith("utils.")}:
        if name == "utils":
            continue
        assert any(inside(name, a) for a in allowed), f"{module} imports {name}"
        assert "nbgrader" not in name


@pytest.mark.parametrize("module", sorted(m for m in MODULES if inside(m, "utils.grading.in_kernel")))
def test_kernel_code_imports_no_grader(module):
    for name in MODULES[module]:
        assert not inside(name, "nbgrader"), f"{module} imports {name}"
        if inside(name, "utils.grading"):
            assert inside(name, "utils.grading.in_kernel"), f"{module} imports {name}"
        assert not inside(name, "utils.instructor"), f"{module} imports {name}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if inside(m, "utils.notebook")))
def test_notebook_helpers_import_the_core_only(module):
    for name in MODULES[module]:
        if inside(name, "utils"):
            assert inside(name, "utils.checks") or inside(name, "utils.notebook"), f"{module} imports {name}"
        assert not inside(name, "torch") and not inside(name, "nbgrader"), f"{module} imports {name}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if inside(m, "utils.grading.in_sandbox")))
def test_sandbox_programs_use_the_standard_library_only(module):
    folder_modules = {m.rpartition(".")[2] for m in MODULES if inside(m, "utils.grading.in_sandbox")}
    for name in MODULES[module]:
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top in folder_modules or name == "__future__", \
            f"{module} imports {name}, which is not in the standard library"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not inside(m, "utils.instructor")))
def test_only_instructor_tools_import_instructor_tools(module):
    assert not any(inside(name, "utils.instructor") for name in MODULES[module]), module


def test_no_import_cycles():
    graph = {module: course_imports(module) for module in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str):
        state[module] = 1
        stack.append(module)
        for name in sorted(graph[module]):
            if name == "utils":
                continue
            if state.get(name) == 1:
                cycle = stack[stack.index(name):] + [name]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if name not in state:
                visit(name)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
