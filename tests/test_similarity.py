"""Similarity between submissions (utils/instructor/similarity.py), on notebooks written here: no grading run.

The calibration tests use the course's own deformable-convolution notebook: its released template,
the instructor's solution, a second correct solution written independently (vectorised where the
instructor's loops), and a planted copy of the instructor's solution (variables renamed, comments
changed, lines reformatted, a print added).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from bs4 import BeautifulSoup

from utils.instructor import similarity
from utils.instructor.course import REPO_ROOT, fill_solutions
from utils.instructor.similarity import DEFAULT_THRESHOLD, MIN_TOKENS, similar_pairs
from utils.instructor.solutions import solution_cells

STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


# --- tiny course roots -----------------------------------------------------------------------------

def answer_cell(grade_id: str, source: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": False, "grade_id": grade_id, "locked": False,
                                 "schema_version": 3, "solution": True, "task": False}
    return cell


def notebook(answers: dict[str, str]):
    """A notebook with a locked markdown cell, then one answer cell per grade_id."""
    intro = nbformat.v4.new_markdown_cell("# Exercise")
    intro.metadata["nbgrader"] = {"grade": False, "grade_id": "intro", "locked": True,
                                  "schema_version": 3, "solution": False, "task": False}
    return nbformat.v4.new_notebook(cells=[intro] + [answer_cell(g, s) for g, s in answers.items()])


def write(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


TEMPLATE = {
    "moving_average": 'def moving_average(x, width):\n    """Means of each window of `width` values of x (1-D)."""\n'
                      f"    {STUB.replace(chr(10), chr(10) + '    ')}\n",
    "normalise": 'def normalise(rows):\n    """Each row of a 2-D array divided by its Euclidean norm."""\n'
                 f"    {STUB.replace(chr(10), chr(10) + '    ')}\n",
}

ALICE = {
    "moving_average": '''def moving_average(x, width):
    """Means of each window of `width` values of x (1-D)."""
    # running sums make every window O(1)
    cumulative = np.cumsum(np.concatenate([[0.0], x]))
    totals = cumulative[width:] - cumulative[:-width]
    result = totals / width
    if result.size == 0:
        raise ValueError(f"width {width} is longer than the input ({len(x)})")
    return result
''',
    "normalise": '''def normalise(rows):
    """Each row of a 2-D array divided by its Euclidean norm."""
    norms = np.sqrt(np.sum(rows * rows, axis=1, keepdims=True))
    norms[norms == 0] = 1.0   # leave zero rows as they are
    return rows / norms
''',
}

# ALICE with identifiers renamed, comments changed and the lines reformatted: nothing else.
ALICE_DISGUISED = {
    "moving_average": '''def moving_average(x, width):
    """Means of each window of `width` values of x (1-D)."""
    c = np.cumsum(np.concatenate(   # prefix sums
        [[0.0], x]))
    s = c[width:]-c[:-width]
    out = s/width
    if out.size == 0: raise ValueError(f"too wide")
    return out
''',
    "normalise": '''def normalise(rows):
    """Each row of a 2-D array divided by its Euclidean norm."""
    n = np.sqrt(np.sum(rows*rows,
                       axis=1, keepdims=True))
    n[n==0] = 1.0
    return rows/n
''',
}

# The same two functions written another way: loops, no prefix sums.
BOB = {
    "moving_average": '''def moving_average(x, width):
    """Means of each window of `width` values of x (1-D)."""
    means = []
    for start in range(len(x) - width + 1):
        window = x[start:start + width]
        means.append(sum(window) / len(window))
    return np.array(means)
''',
    "normalise": '''def normalise(rows):
    """Each row of a 2-D array divided by its Euclidean norm."""
    out = np.array(rows, dtype=float)
    for i in range(out.shape[0]):
        length = np.linalg.norm(out[i])
        if length > 0:
            out[i] /= length
    return out
''',
}


def course(tmp_path: Path, students: dict[str, dict[str, str]], template=TEMPLATE, assignment="a1",
           name="ex") -> Path:
    """A course root: release/<assignment>/<name>.ipynb and autograded/<student>/<assignment>/<name>.ipynb."""
    write(tmp_path / "release" / assignment / f"{name}.ipynb", notebook(template))
    for student, answers in students.items():
        write(tmp_path / "autograded" / student / assignment / f"{name}.ipynb", notebook({**template, **answers}))
    return tmp_path


def pair_names(pairs) -> set[tuple[str, str]]:
    return {(p.student_a, p.student_b) for p in pairs}


def similarity_of(root: Path, a: str, b: str, assignment="a1") -> float:
    """The similarity of one pair, whatever it is (threshold 0)."""
    found = [p for p in similar_pairs(root, assignment, threshold=0.0) if {p.student_a, p.student_b} == {a, b}]
    return found[0].similarity if found else 0.0


# --- the course's own notebook: calibration of the threshold ---------------------------------------

DEFORMABLE_RELEASE = REPO_ROOT / "release" / "deformable_conv" / "deformable_conv.ipynb"
DEFORMABLE_SOURCE = REPO_ROOT / "source" / "deformable_conv" / "deformable_conv.ipynb"

# A second correct solution of the deformable-convolution notebook, written without the instructor's:
# what goes in place of the stub of each answer cell.
INDEPENDENT_BODIES = {
    "conv_output_size": '''
effective = dilation * (kernel_size - 1) + 1
span = size + 2 * padding - effective
if span < 0:
    return 0
return span // stride + 1''',
    "bilinear_interpolate": '''
height, width = a_l.shape
top, left = int(np.floor(q_y)), int(np.floor(q_x))
fy, fx = q_y - top, q_x - left
total = 0.0
for yy, wy in ((top, 1.0 - fy), (top + 1, fy)):
    for xx, wx in ((left, 1.0 - fx), (left + 1, fx)):
        if 0 <= yy < height and 0 <= xx < width:
            total += wy * wx * a_l[yy, xx]
return float(total)''',
    "sampling_positions": '''
batch, _, out_h, out_w = delta.shape
kernel_h, kernel_w = kernel_size
offsets = delta.reshape(batch, kernel_h * kernel_w, 2, out_h, out_w)
ky, kx = np.meshgrid(np.arange(kernel_h), np.arange(kernel_w), indexing="ij")
grid_y = (np.arange(out_h) * stride - padding)[None, :, None] + (ky.reshape(-1) * dilation)[:, None, None]
grid_x = (np.arange(out_w) * stride - padding)[None, None, :] + (kx.reshape(-1) * dilation)[:, None, None]
return grid_y[None] + offsets[:, :, 0], grid_x[None] + offsets[:, :, 1]''',
    "deform_conv2d": '''
batch, channels, height, width = a_l.shape
filters, _, kernel_h, kernel_w = weight.shape
p_y, p_x = sampling_positions(delta, (kernel_h, kernel_w), stride, padding, dilation)
y0, x0 = np.floor(p_y).astype(int), np.floor(p_x).astype(int)
sampled = np.zeros((batch, channels) + p_y.shape[1:])
batch_index = np.arange(batch)[:, None, None, None]
for corner_y in (y0, y0 + 1):
    for corner_x in (x0, x0 + 1):
        inside = (corner_y >= 0) & (corner_y < height) & (corner_x >= 0) & (corner_x < width)
        share = (1 - np.abs(p_y - corner_y)) * (1 - np.abs(p_x - corner_x)) * inside
        gathered = a_l[batch_index, :, np.clip(corner_y, 0, height - 1), np.clip(corner_x, 0, width - 1)]
        sampled += np.moveaxis(gathered, -1, 1) * share[:, None]
columns = (sampled * mask[:, None]).reshape(batch, channels * kernel_h * kernel_w, -1)
out = np.einsum("fk,nkp->nfp", weight.reshape(filters, -1), columns)
return out.reshape(batch, filters, *p_y.shape[2:])''',
}

# The planted copy: (old, new) replacements in the instructor's solution, each a rename, a changed
# comment or a reformatted line; one print added.
RENAMES = {"H": "rows_n", "W": "cols_n", "y0": "top", "x0": "left", "y1": "bottom", "x1": "right",
           "pixel": "px", "dy": "frac_y", "dx": "frac_x", "v_0": "upper", "v_1": "lower",
           "p_y": "pos_y", "p_x": "pos_x", "rows": "ys", "cols": "xs", "out": "result", "value": "acc",
           "h_start": "y_base", "w_start": "x_base", "delta_y": "oy", "delta_x": "ox", "m_k": "modulation",
           "sample_y": "sy", "sample_x": "sx", "sample": "val", "K_h": "kern_h", "K_w": "kern_w",
           "H_out": "out_rows", "W_out": "out_cols", "N": "batch"}
REFORMAT = [
    ("# top row, along x", "# interpolate the upper pair"),
    ("# bottom row, along x", "# and the lower pair"),
    ("# then along y", "# blend vertically"),
    ("return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1",
     "return ((size+2*padding\n            - dilation*(kernel_size-1) - 1)//stride) + 1"),
    ("    out = np.zeros((N, C_out, H_out, W_out))\n",
     "    out = np.zeros(\n        (N, C_out,\n         H_out, W_out)\n    )\n    print('computing', out.shape)\n"),
]


def deformable_course(tmp_path: Path, **students: dict[str, str]) -> Path:
    release = nbformat.read(DEFORMABLE_RELEASE, as_version=4)
    write(tmp_path / "release" / "deformable_conv" / "deformable_conv.ipynb", release)
    for student, answers in students.items():
        write(tmp_path / "autograded" / student / "deformable_conv" / "deformable_conv.ipynb",
              fill_solutions(release, answers))
    return tmp_path


def independent_answers() -> dict[str, str]:
    templates = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(DEFORMABLE_RELEASE, 4).cells
                 if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    stub = STUB.replace("\n", "\n    ")
    assert all(stub in templates[gid] for gid in INDEPENDENT_BODIES)
    return {gid: templates[gid].replace(stub, body.strip("\n").replace("\n", "\n    "))
            for gid, body in INDEPENDENT_BODIES.items()}


def planted_copy(answers: dict[str, str]) -> dict[str, str]:
    copied = {}
    for gid, code in answers.items():
        for old, new in REFORMAT:
            code = code.replace(old, new)
        for old, new in RENAMES.items():
            code = re.sub(rf"\b{old}\b", new, code)
        copied[gid] = code
    return copied


def test_independent_deformable_solution_is_correct():
    """The independent solution is an honest one: it gives the instructor's results."""
    namespace: dict = {"np": np}
    for code in independent_answers().values():
        exec(code, namespace)
    reference: dict = {"np": np}
    for gid, code in solution_cells(DEFORMABLE_SOURCE).items():
        if gid in INDEPENDENT_BODIES:
            exec(code, reference)
    rng = np.random.default_rng(0)
    a_l, weight = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 2, 3))
    delta, mask = rng.normal(size=(2, 12, 4, 3)) * 1.5, rng.uniform(size=(2, 6, 4, 3))
    args = (a_l, delta, mask, weight, 2, 1, 1)
    np.testing.assert_allclose(namespace["deform_conv2d"](*args), reference["deform_conv2d"](*args), atol=1e-12)
    for case in [(7, 3), (8, 3, 2, 1, 2), (5, 1, 3)]:
        assert namespace["conv_output_size"](*case) == reference["conv_output_size"](*case)
    assert namespace["bilinear_interpolate"](a_l[0, 0], 4.3, -0.4) == pytest.approx(
        reference["bilinear_interpolate"](a_l[0, 0], 4.3, -0.4), abs=1e-12)


def test_course_notebook_independent_answers_pass_planted_copy_is_flagged(tmp_path):
    instructor = solution_cells(DEFORMABLE_SOURCE)
    copy = planted_copy(instructor)
    assert copy != instructor and "print(" in copy["deform_conv2d"] and "acc +=" in copy["deform_conv2d"]
    root = deformable_course(tmp_path, ana=instructor, ben=independent_answers(), cleo=copy)

    honest = similarity_of(root, "ana", "ben", "deformable_conv")
    copied = similarity_of(root, "ana", "cleo", "deformable_conv")
    assert honest < DEFAULT_THRESHOLD - 0.2, f"independent answers are {honest:.0%} similar"
    assert copied >= DEFAULT_THRESHOLD + 0.2, f"the planted copy is only {copied:.0%} similar"

    flagged = similar_pairs(root, "deformable_conv")
    assert pair_names(flagged) == {("ana", "cleo")}
    assert flagged[0].notebook == "deformable_conv" and flagged[0].assignment == "deformable_conv"
    assert flagged[0].shared_tokens >= MIN_TOKENS


# --- what is compared ------------------------------------------------------------------------------

def test_planted_pair_flagged_independent_pair_not(tmp_path):
    root = course(tmp_path, {"alice": ALICE, "bob": BOB, "carol": ALICE_DISGUISED})
    pairs = similar_pairs(root, "a1")
    assert pair_names(pairs) == {("alice", "carol")}
    assert similarity_of(root, "alice", "bob") < DEFAULT_THRESHOLD


def test_renaming_comments_and_formatting_change_nothing(tmp_path):
    root = course(tmp_path, {"alice": ALICE, "carol": ALICE_DISGUISED})
    (pair,) = similar_pairs(root, "a1")
    assert pair.similarity == pytest.approx(1.0), pair.similarity
    assert (pair.student_a, pair.student_b) == ("alice", "carol")


def test_a_changed_expression_lowers_the_similarity(tmp_path):
    """The normalisation keeps the structure: a different computation is not 'the same after renaming'."""
    changed = {**ALICE, "normalise": ALICE["normalise"].replace(
        "np.sqrt(np.sum(rows * rows, axis=1, keepdims=True))", "np.linalg.norm(rows, axis=1)[:, None]")}
    root = course(tmp_path, {"alice": ALICE, "dan": changed})
    assert similarity_of(root, "alice", "dan") < 0.95


def test_template_and_near_empty_answers_are_not_compared(tmp_path):
    tiny = {"moving_average": TEMPLATE["moving_average"].replace(STUB.split("\n")[1], "return x[:width]")}
    root = course(tmp_path, {"alice": ALICE, "stub1": {}, "stub2": {}, "tiny": tiny, "tiny2": tiny})
    assert similar_pairs(root, "a1", threshold=0.0) == []          # alice has no one to be compared with
    root = course(tmp_path, {"alice": ALICE, "carol": ALICE_DISGUISED, "stub1": {}, "stub2": {}, "tiny": tiny})
    assert pair_names(similar_pairs(root, "a1", threshold=0.0)) == {("alice", "carol")}


def test_the_template_is_excluded(tmp_path):
    """A long template shared by everyone does not make two different answers similar."""
    long_doc = '    """' + "\n    ".join(f"step {i}: x = f(x, {i}) * g({i})" for i in range(60)) + '"""\n'
    helpers = "def helper(x):\n" + "".join(f"    x = np.tanh(x * {i}) + {i}\n" for i in range(40)) + "    return x\n"
    template = {gid: code.replace('"""\n', '"""\n' + long_doc, 1) for gid, code in TEMPLATE.items()}
    template["helper"] = helpers
    students = {name: {gid: template[gid].replace(STUB.replace("\n", "\n    "), ans.split('"""\n', 1)[1].strip())
                       for gid, ans in answers.items()} for name, answers in (("alice", ALICE), ("bob", BOB))}
    root = course(tmp_path, students, template=template)
    assert similarity_of(root, "alice", "bob") < DEFAULT_THRESHOLD


def test_students_filter_and_order(tmp_path):
    root = course(tmp_path, {"alice": ALICE, "bob": BOB, "carol": ALICE_DISGUISED, "dave": ALICE})
    pairs = similar_pairs(root, "a1")
    assert pair_names(pairs) == {("alice", "carol"), ("alice", "dave"), ("carol", "dave")}
    assert [p.similarity for p in pairs] == sorted((p.similarity for p in pairs), reverse=True)
    assert pair_names(similar_pairs(root, "a1", students=["bob", "carol", "dave"])) == {("carol", "dave")}


def test_missing_release_is_an_error(tmp_path):
    course(tmp_path, {"alice": ALICE})
    with pytest.raises(FileNotFoundError, match="release/a2"):
        similar_pairs(tmp_path, "a2")


# --- hostile submissions ---------------------------------------------------------------------------

def test_symlinks_are_never_followed(tmp_path):
    root = course(tmp_path, {"alice": ALICE, "bob": BOB})
    alice_nb = root / "autograded" / "alice" / "a1" / "ex.ipynb"
    (root / "autograded" / "linked_nb" / "a1").mkdir(parents=True)
    (root / "autograded" / "linked_nb" / "a1" / "ex.ipynb").symlink_to(alice_nb)
    (root / "autograded" / "linked_folder").mkdir()
    (root / "autograded" / "linked_folder" / "a1").symlink_to(root / "autograded" / "alice" / "a1")
    (root / "autograded" / "linked_student").symlink_to(root / "autograded" / "alice")
    os.link(alice_nb, root / "hard.ipynb")   # alice's notebook now has two names: not read either
    (root / "autograded" / "hard" / "a1").mkdir(parents=True)
    os.link(alice_nb, root / "autograded" / "hard" / "a1" / "ex.ipynb")
    assert similar_pairs(root, "a1", threshold=0.0) == []
    os.unlink(root / "hard.ipynb")
    os.unlink(root / "autograded" / "hard" / "a1" / "ex.ipynb")
    write(root / "autograded" / "copy" / "a1" / "ex.ipynb", notebook({**TEMPLATE, **ALICE}))
    assert pair_names(similar_pairs(root, "a1")) == {("alice", "copy")}


def test_oversize_and_malformed_notebooks_are_skipped(tmp_path):
    root = course(tmp_path, {"alice": ALICE, "carol": ALICE_DISGUISED, "big": ALICE})
    big = root / "autograded" / "big" / "a1" / "ex.ipynb"
    nb = json.loads(big.read_text())
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout",
                                  "text": "x" * (similarity.MAX_NOTEBOOK_BYTES + 1)}]
    big.write_text(json.dumps(nb))
    broken = {"not_json": "{", "deep": "[" * 100_000 + "]" * 100_000, "not_a_dict": "[1, 2]",
              "odd_cells": json.dumps({"cells": [1, {"cell_type": "code", "metadata": [],
                                                     "source": 3}, {"cell_type": "code",
                                                     "metadata": {"nbgrader": {"solution": True}},
                                                     "source": ["x", 1]}]})}
    for student, text in broken.items():
        path = root / "autograded" / student / "a1" / "ex.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(text)
    (root / "autograded" / "fifo" / "a1").mkdir(parents=True)
    os.mkfifo(root / "autograded" / "fifo" / "a1" / "ex.ipynb")
    # big holds alice's answers: read, it would be flagged with alice and carol
    assert pair_names(similar_pairs(root, "a1", threshold=0.0)) == {("alice", "carol")}


def test_answer_code_is_cut(tmp_path):
    huge = {"moving_average": ALICE["moving_average"] + "\n".join(f"v{i} = {i}" for i in range(60_000))}
    nb = notebook({**TEMPLATE, **huge})
    assert len(similarity.answer_code(json.loads(nbformat.writes(nb)))) == similarity.MAX_ANSWER_CHARS


def test_side_by_side_escapes_everything(tmp_path):
    evil = '\n    print("</pre><script>alert(1)</script><img src=x onerror=alert(2)>")\n'
    answers = {gid: code + evil for gid, code in ALICE.items()}
    root = course(tmp_path, {"<b onclick=alert(3)>eve": answers, "mallory": answers})
    (pair,) = similar_pairs(root, "a1")
    soup = BeautifulSoup(pair.side_by_side_html, "html.parser")
    assert {tag.name for tag in soup.find_all(True)} <= {"div", "p", "pre", "mark"}
    assert not any(attr.startswith("on") for tag in soup.find_all(True) for attr in tag.attrs)
    text = soup.get_text()
    assert text.count("</pre><script>alert(1)</script>") == 4       # two cells, two students, shown as text
    assert "<b onclick=alert(3)>eve" in text and soup.find("b") is None
    assert len(soup.find_all("pre")) == 2 and soup.find("mark") is not None


def test_side_by_side_highlights_the_shared_code(tmp_path):
    root = course(tmp_path, {"alice": ALICE, "carol": {**ALICE_DISGUISED, "normalise": BOB["normalise"]}})
    (pair,) = similar_pairs(root, "a1", threshold=0.3)
    left, right = BeautifulSoup(pair.side_by_side_html, "html.parser").find_all("pre")
    marked_left = " ".join(m.get_text() for m in left.find_all("mark"))
    marked_right = " ".join(m.get_text() for m in right.find_all("mark"))
    assert "np.cumsum" in marked_left and "np.cumsum" in marked_right
    # the k-grams that begin in the template reach the first characters of an answer, no further
    assert "np.linalg.norm" not in marked_right and "keepdims" not in marked_left


def test_cli_prints_one_line_per_pair(tmp_path, capsys):
    root = course(tmp_path, {"alice": ALICE, "bob": BOB, "carol\x1b[31m": ALICE_DISGUISED})
    assert similarity.main(["a1", "--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "alice" in lines[0] and "carol\\x1b[31m" in lines[0] and "100%" in lines[0]
    assert lines[1].startswith("1 pair(s) of a1")
    assert similarity.main(["nope", "--root", str(root)]) == 1
