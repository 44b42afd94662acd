"""Pairs of students whose answer code is suspiciously similar, with a side-by-side view.

    python -m utils.instructor.similarity ASSIGNMENT [--threshold X] [--root DIR]

What is compared: for each student and notebook of an assignment, the code cells of the graded copy
``autograded/<student>/<assignment>/<notebook>.ipynb`` that nbgrader marks as answers
(``metadata.nbgrader.solution``), concatenated in notebook order. The notebooks are those of
``release/<assignment>/``; the same cells there (signatures, docstrings, ``# YOUR CODE HERE`` stubs)
are the template, excluded as boilerplate.

The detector is copydetect's: pygments tokens with identifiers, function and class names and string
literals replaced by one letter each, comments and whitespace dropped (so renaming, comments and
formatting change nothing), k-gram fingerprints selected by winnowing, and copydetect's
boilerplate removal (every k-gram of the template is discarded). Each answer is fingerprinted once;
the pairs of a notebook are then compared with ``copydetect.compare_files``, which is cheap (set
intersections), so 200 students (19,900 pairs per notebook) take seconds. Pairs that share no
fingerprint are never listed, whatever the threshold.

The demo's sample submissions are all the instructor's solution with one mistake each, so they are
(rightly) flagged against each other; a real class's independent answers are not.

Submissions are untrusted: no link is ever followed (folders and files are opened with
``O_NOFOLLOW`` through :mod:`utils.grading.safe_files`), a notebook larger than
:data:`MAX_NOTEBOOK_BYTES` or not valid JSON is skipped, the answer code is cut at
:data:`MAX_ANSWER_CHARS`, and everything from a submission is HTML-escaped in the side-by-side view
(and its control characters escaped on the terminal).
"""
from __future__ import annotations

import argparse
import html
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from copydetect import CodeFingerprint, compare_files
from copydetect.utils import highlight_overlap

from utils.grading.safe_files import NotAPlainFile, open_folder, open_plain_file

MAX_NOTEBOOK_BYTES = 8 * 2**20
"""A graded notebook larger than this (8 MiB) is not read, and its student not compared on it."""

MAX_ANSWER_CHARS = 200_000
"""The answer code of one student for one notebook is cut after this many characters (200 kB, tens of
times the longest solution of the course): it bounds tokenising and comparing a hostile submission."""

NOISE_K = 25
"""copydetect's noise threshold: the k-gram length, in characters of the normalised code
(``V=V+1`` for ``total = total + 1``). 25 normalised characters are about 10-15 source tokens, one
line of typical NumPy code: shorter common idioms never match on their own. copydetect's default."""

GUARANTEE_K = 25
"""copydetect's guarantee threshold: any match this long is found. Equal to :data:`NOISE_K` (a
winnowing window of 1, every k-gram kept): the answers are small, so full precision costs nothing."""

MIN_TOKENS = 100
"""Answers with fewer normalised characters outside the template than this are not compared.

The unit is copydetect's: characters of the normalised code covered by fingerprints, i.e. what the
student added to the template. The untouched stub counts 0; one answered formula such as
``return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1`` counts about 30;
the deformable-convolution notebook answered in full about 1,000. Below 100 (3 or 4 lines) an answer
is too small to tell copying from the one obvious way of writing it, and because the similarity of
a pair is the larger of its two fractions, a tiny answer contained in a full one would read 100 %."""

DEFAULT_THRESHOLD = 0.6
"""Pairs at or above this similarity are reported.

Measured on the course's deformable-convolution notebook (see ``tests/test_similarity.py``): two
independent correct answers (the instructor's loops, and a second solution written separately,
vectorised) share about 15 % of their normalised code (the same formula for the output size, the
same ``np.zeros((N, ...))`` and loop headers), while a copy with every variable renamed, the
comments changed, the lines reformatted and a print added shares about 98 %. copydetect's own display
default, 0.33, sits too close to what independent answers of one narrow exercise share; 0.6 keeps
a wide margin both ways, and a copy must leave less than half of its code unchanged to slip below
it. A flag is evidence for a person to read in the side-by-side view, not a verdict."""


@dataclass
class SimilarPair:
    """Two students' answers to one notebook that share much of their normalised code."""
    assignment: str
    notebook: str            # notebook stem, e.g. "vit"
    student_a: str
    student_b: str           # student_a < student_b
    similarity: float        # 0..1: max over the two students of (shared normalised code / own normalised code)
    shared_tokens: int       # normalised characters of student_a's answer found in student_b's
    side_by_side_html: str   # the two answers in two columns, the shared code highlighted; everything escaped


@dataclass
class _Answer:
    student: str
    fingerprint: CodeFingerprint


def _printable(text: str) -> str:
    """``text`` with every control or non-printable character escaped (for the terminal)."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _read_json(folder_fd: int, name: str) -> dict | None:
    """The JSON object in regular file ``name`` of an open folder, or None: a link, a special file, a
    file over :data:`MAX_NOTEBOOK_BYTES`, or anything that is not a JSON object."""
    try:
        fd, info = open_plain_file(folder_fd, name)
    except (NotAPlainFile, OSError):
        return None
    with os.fdopen(fd, "rb") as f:
        if info.st_size > MAX_NOTEBOOK_BYTES:
            return None
        data = f.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None
    try:
        nb = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return nb if isinstance(nb, dict) else None


def answer_code(nb: dict) -> str:
    """The code cells of a notebook's JSON that nbgrader marks as answers (``solution: true``), joined
    by blank lines, cut at :data:`MAX_ANSWER_CHARS`. Anything malformed in the JSON is skipped."""
    cells = nb.get("cells")
    parts: list[str] = []
    size = 0
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata")
        grader = meta.get("nbgrader") if isinstance(meta, dict) else None
        if not isinstance(grader, dict) or grader.get("solution") is not True:
            continue
        source = cell.get("source")
        if isinstance(source, list):
            source = "".join(line for line in source if isinstance(line, str))
        if not isinstance(source, str):
            continue
        parts.append(source.rstrip("\n") + "\n")
        size += len(source) + 2
        if size >= MAX_ANSWER_CHARS:
            break
    return "\n".join(parts)[:MAX_ANSWER_CHARS]


def _fingerprint(code: str, boilerplate=None, k: int = NOISE_K, window: int = GUARANTEE_K - NOISE_K + 1):
    # ``fp`` gives copydetect the text itself (it never opens a path); the name only labels it.
    fingerprint = CodeFingerprint("answer.py", k, window, boilerplate, language="python", fp=io.StringIO(code))
    if len(fingerprint.offsets):
        # copydetect 0.5.0 stores a class name's own length instead of the running offset in this
        # table (filter_code, the Name.Class branch); the running offset never decreases, so the
        # highlighting of code after a ``class`` line is put back in place with a running maximum.
        fingerprint.offsets[:, 1] = np.maximum.accumulate(fingerprint.offsets[:, 1])
    return fingerprint


def _boilerplate(template: str) -> np.ndarray:
    """Every k-gram hash of the template's answer cells, as copydetect builds its boilerplate list."""
    return np.unique(np.array(list(_fingerprint(template, window=1).hashes), dtype=np.int64))


def _student_folders(root: Path) -> list[str]:
    """The real folders of ``autograded/`` (links are not listed): one per student."""
    try:
        top = open_folder(root, "autograded")
    except OSError:
        return []
    try:
        with os.scandir(top) as entries:
            names = sorted(entry.name for entry in entries if entry.is_dir(follow_symlinks=False))
    finally:
        os.close(top)
    return names


def _notebooks(root: Path, assignment: str) -> dict[str, str]:
    """notebook stem -> template answer code, for each notebook of ``release/<assignment>/``."""
    try:
        folder = open_folder(root, f"release/{assignment}")
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"release/{assignment}/ is missing or not a folder under {root}: the released "
                                "notebooks are needed to tell the template from the answers") from exc
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(".ipynb") and e.is_file(follow_symlinks=False))
        templates = {}
        for name in names:
            nb = _read_json(folder, name)
            if nb is not None:
                templates[name[:-len(".ipynb")]] = answer_code(nb)
        return templates
    finally:
        os.close(folder)


def _answers(root: Path, assignment: str, notebook: str, students: list[str], boilerplate) -> list[_Answer]:
    """The fingerprinted answers to one notebook of the students who wrote at least :data:`MIN_TOKENS`."""
    answers = []
    for student in students:
        try:
            folder = open_folder(root, f"autograded/{student}/{assignment}")
        except (OSError, ValueError):
            continue
        try:
            nb = _read_json(folder, notebook + ".ipynb")
        finally:
            os.close(folder)
        if nb is None:
            continue
        fingerprint = _fingerprint(answer_code(nb), boilerplate)
        if fingerprint.token_coverage >= MIN_TOKENS:
            answers.append(_Answer(student, fingerprint))
    return answers


def _highlighted(code: str, slices) -> str:
    """``code`` escaped, the copied slices wrapped in ``<mark>``."""
    if slices.ndim != 2 or slices.shape[1] == 0:
        return html.escape(code)
    marked, _ = highlight_overlap(code, slices, "<mark>", "</mark>", escape_html=True)
    return marked


def side_by_side(assignment: str, notebook: str, a: str, b: str, code_a: str, code_b: str,
                 slices_a, slices_b, similarity: float) -> str:
    """A self-contained HTML fragment (inline styles only): the two answers in two columns, shared code marked."""
    column = ("flex:1 1 0;min-width:0;margin:0;padding:6px;background:#f7f7f7;border:1px solid #ddd;"
              "font:12px/1.35 monospace;white-space:pre-wrap;overflow-wrap:anywhere")
    cells = "".join(
        f'<div style="flex:1 1 0;min-width:0"><div style="font-weight:bold">{html.escape(name)}</div>'
        f'<pre style="{column}">{_highlighted(code, slices)}</pre></div>'
        for name, code, slices in ((a, code_a, slices_a), (b, code_b, slices_b)))
    title = (f"{html.escape(assignment)}/{html.escape(notebook)}: {html.escape(a)} and {html.escape(b)}, "
             f"{similarity:.0%} similar (highlighted: code found in both after renaming, "
             f"comments and formatting are set aside)")
    return (f'<div class="similar-pair"><p style="margin:4px 0">{title}</p>'
            f'<div style="display:flex;gap:8px;align-items:flex-start">{cells}</div></div>')


def similar_pairs(root: Path, assignment: str, threshold: float = DEFAULT_THRESHOLD,
                  students: list[str] | None = None) -> list[SimilarPair]:
    """Pairs of the assignment's graded submissions whose answer code is at least `threshold` similar,
    most similar first.

    root: the course root (holds ``autograded/`` and ``release/``). students: only these (default:
    every folder of ``autograded/`` that holds the assignment). A pair is compared per notebook;
    students below :data:`MIN_TOKENS` for a notebook, or whose notebook cannot be read, are left out
    of that notebook's pairs. Raises FileNotFoundError when ``release/<assignment>/`` is missing.
    """
    root = Path(root)
    templates = _notebooks(root, assignment)
    names = _student_folders(root)
    if students is not None:
        wanted = set(students)
        names = [name for name in names if name in wanted]
    pairs = []
    for notebook, template in templates.items():
        answers = _answers(root, assignment, notebook, names, _boilerplate(template))
        for i, first in enumerate(answers):
            for second in answers[i + 1:]:
                overlap, (sim_a, sim_b), (slices_a, slices_b) = compare_files(first.fingerprint, second.fingerprint)
                similarity = float(max(sim_a, sim_b))
                if overlap == 0 or similarity < threshold:
                    continue
                fa, fb = first.fingerprint, second.fingerprint
                pairs.append(SimilarPair(
                    assignment, notebook, first.student, second.student, similarity, int(overlap),
                    side_by_side(assignment, notebook, first.student, second.student,
                                 fa.raw_code, fb.raw_code, slices_a, slices_b, similarity)))
    pairs.sort(key=lambda p: (-p.similarity, p.notebook, p.student_a, p.student_b))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.similarity", description=__doc__.split("\n")[0])
    parser.add_argument("assignment", help="the assignment, as in autograded/<student>/<assignment>/")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"smallest similarity reported, 0..1 (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--root", default=".", help="the course root (holds autograded/ and release/); default: here")
    args = parser.parse_args(argv)
    try:
        pairs = similar_pairs(Path(args.root), args.assignment, args.threshold)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    for pair in pairs:
        print(f"{pair.similarity:4.0%}  {pair.notebook}  {_printable(pair.student_a)}  {_printable(pair.student_b)}"
              f"  ({pair.shared_tokens} shared normalised characters)")
    print(f"{len(pairs)} pair(s) of {_printable(args.assignment)} at or above {args.threshold:.0%} similarity.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
