"""Adversarial and malformed submissions of the deformable-convolution notebook.

Each trick is built on a *plain wrong* submission (the solution, except that
``deform_conv2d`` returns zeros) and must earn no point that submission does not earn.
The honest variants are the solution submitted in awkward ways and must get full marks.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np

from utils.instructor.course import fill_solutions, solution_cells

ASSIGNMENT = NOTEBOOK = "deformable_conv"

WRONG_DEFORM = '''
def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    N, C_in, H, W = a_l.shape
    C_out, _, K_h, K_w = weight.shape
    return np.zeros((N, C_out, conv_output_size(H, K_h, stride, padding, dilation),
                     conv_output_size(W, K_w, stride, padding, dilation)))
'''

FROM_TORCHVISION = '''
def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    import torch
    import torchvision
    t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64))
    return torchvision.ops.deform_conv2d(t(a_l), t(delta), t(weight), stride=stride, padding=padding,
                                         dilation=dilation, mask=t(mask)).numpy()
'''

READ_SOURCE = '''
def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    import json, glob
    for path in glob.glob("../../../source/*/*.ipynb") + glob.glob("/work/*/source/*/*.ipynb"):
        for cell in json.load(open(path))["cells"]:
            code = "".join(cell["source"])
            if "def deform_conv2d" in code and "BEGIN SOLUTION" in code:
                scope = dict(globals())
                exec(code, scope)
                return scope["deform_conv2d"](a_l, delta, mask, weight, stride, padding, dilation)
    N, C_in, H, W = a_l.shape
    C_out, _, K_h, K_w = weight.shape
    return np.zeros((N, C_out, conv_output_size(H, K_h, stride, padding, dilation),
                     conv_output_size(W, K_w, stride, padding, dilation)))
'''

SHADOW_UTILS = '''
def _always_passes(*args, **kwargs):
    print("passed")

check_bilinear_interpolate = check_conv_output_size = _always_passes
check_deform_conv2d = check_sampling_positions = _always_passes
'''

# trick name -> (cells inserted after the imports cell, cells inserted after the deform_conv2d cell)
TRICKS = {
    "trick_allclose": ([
        "np.allclose = lambda *args, **kwargs: True\n"
        "np.testing.assert_allclose = lambda *args, **kwargs: None\n"
        "np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast(a, b).shape, dtype=bool)"], []),
    "trick_patch_reference": ([
        "import utils.deformable_conv.deform_conv2d as _d\n"
        "_d.torchvision_deform_conv2d = lambda a_l, delta, mask, weight, **kw: "
        "deform_conv2d(a_l, delta, mask, weight, **kw)\n"
        "try:\n"
        "    import torchvision.ops\n"
        "    torchvision.ops.deform_conv2d = lambda *args, **kwargs: None\n"
        "except ImportError as error:\n"
        "    print(error)"], []),
    "trick_input_transformer": ([], [
        "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])"]),
    "trick_gradebook_write": ([
        "import sqlite3\n"
        "for path in ['../../../gradebook.db', '../../gradebook.db', '../gradebook.db']:\n"
        "    try:\n"
        "        con = sqlite3.connect(path)\n"
        "        con.execute('UPDATE grade SET manual_score = 100, extra_credit = 100')\n"
        "        con.commit()\n"
        "        print('wrote', path)\n"
        "    except Exception as error:\n"
        "        print(path, error)"], []),
    "trick_sys_exit": (["import sys\nsys.exit(0)"], []),
    "trick_os_exit": ([], ["import os\nos._exit(0)"]),
    "trick_infinite_loop": (["while True:\n    pass"], []),
    "trick_memory_bomb": (["blocks = []\nwhile True:\n    blocks.append(np.ones(2**27))"], []),
    "trick_fake_passed": ([], [
        "for name in ['conv_output_size', 'bilinear_interpolate', 'sampling_positions', 'deform_conv2d']:\n"
        "    print(f'✓ {name} matches the reference on all cases')\n"
        "print('All tests passed!')"]),
    "trick_shadow_utils": ([], []),
    "trick_from_scratch_violation": ([], []),
    "trick_hardcoded_visible": ([], []),
    "trick_read_source": ([], []),
}

HONEST = ["honest", "honest_deleted_tests", "honest_edited_metadata", "honest_renamed", "honest_huge_output"]
BROKEN = ["broken_invalid_json"]
PLAIN_WRONG = "plain_wrong"


def _code(source: str):
    return nbformat.v4.new_code_cell(source)


def _hardcoded_visible_deform() -> str:
    """A deform_conv2d that returns torchvision's answers for the visible inputs, zeros otherwise."""
    from utils.deformable_conv import DEFORM
    table = {}
    for case in DEFORM.make_cases(False):
        key = float(np.round(np.asarray(case.inputs["a_l"]).sum() + np.asarray(case.inputs["delta"]).sum(), 9))
        table[repr(key)] = DEFORM.reference(case.inputs).tolist()
    return (f"_ANSWERS = json.loads({json.dumps(json.dumps(table))!r})\n"
            "def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):\n"
            "    key = repr(float(np.round(np.asarray(a_l).sum() + np.asarray(delta).sum(), 9)))\n"
            "    if key in _ANSWERS:\n"
            "        return np.array(_ANSWERS[key])\n"
            "    N, C_in, H, W = a_l.shape\n"
            "    C_out, _, K_h, K_w = weight.shape\n"
            "    return np.zeros((N, C_out, conv_output_size(H, K_h, stride, padding, dilation),\n"
            "                     conv_output_size(W, K_w, stride, padding, dilation)))\n").replace(
        "_ANSWERS = ", "import json\n_ANSWERS = ", 1)


def _index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def build(course: Path) -> dict[str, str]:
    """Write every submission into ``course/submitted``; return student -> what it should get."""
    release = nbformat.read(course / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    answers = solution_cells(course / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    solution = fill_solutions(release, answers)
    wrong_answers = {**answers, "deform_conv2d": WRONG_DEFORM.strip()}
    expectations = {}

    def write(student, nb, name=f"{NOTEBOOK}.ipynb"):
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(nb, str):
            (folder / name).write_text(nb)
        else:
            nbformat.write(nb, folder / name)
        return folder

    write(PLAIN_WRONG, fill_solutions(release, wrong_answers))
    expectations[PLAIN_WRONG] = "baseline"
    special = {"trick_from_scratch_violation": FROM_TORCHVISION, "trick_hardcoded_visible": _hardcoded_visible_deform(),
               "trick_read_source": READ_SOURCE}
    for student, (after_imports, after_deform) in TRICKS.items():
        nb = fill_solutions(release, {**wrong_answers, "deform_conv2d": special.get(student, WRONG_DEFORM).strip()})
        position = _index(nb, "deform_conv2d") + 1
        for source in reversed(after_deform):
            nb.cells.insert(position, _code(source))
        position = _index(nb, "imports") + 1
        for source in reversed(after_imports):
            nb.cells.insert(position, _code(source))
        folder = write(student, nb)
        if student == "trick_shadow_utils":
            (folder / "utils.py").write_text(SHADOW_UTILS)
            (folder / "utils").mkdir(exist_ok=True)
            (folder / "utils" / "__init__.py").write_text(SHADOW_UTILS)
        expectations[student] = "no more than baseline"

    write("honest", solution)
    deleted = nbformat.from_dict(json.loads(json.dumps(solution)))
    deleted.cells = [c for c in deleted.cells
                     if not c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("test_")]
    write("honest_deleted_tests", deleted)
    edited = nbformat.from_dict(json.loads(json.dumps(solution)))
    for cell in edited.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") == "test_deform_conv2d":
            meta["points"] = 100
            meta["locked"] = False
        if meta.get("grade_id") == "test_bilinear_interpolate":
            meta["grade"] = False
            meta["solution"] = True
    write("honest_edited_metadata", edited)
    write("honest_renamed", solution, name=f"{NOTEBOOK} (1).ipynb")
    huge = nbformat.from_dict(json.loads(json.dumps(solution)))
    huge.cells.insert(_index(huge, "imports") + 1, _code("print('x' * 50_000_000)"))
    write("honest_huge_output", huge)
    for student in HONEST:
        expectations[student] = "full marks"
    write("broken_invalid_json", '{"cells": [ this is not json', )
    expectations["broken_invalid_json"] = "0 with a note"
    return expectations
