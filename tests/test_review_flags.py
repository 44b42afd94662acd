"""The grader's review of submitted code (utils/grading/review_flags.py) and the instructor's list of it.

Each construct that can get around the from-scratch rule or read the grader's files is written the
way a student would, in a cell of a real release notebook, and must be flagged with its line as
evidence; the instructor's solutions and every sample mistake of the course must raise no flag.
The flags survive in the autograded notebook's metadata and are listed by
``python -m utils.instructor.review_flags`` without following links or trusting the files.
"""
from __future__ import annotations

import ast
import copy
import json
import os
from pathlib import Path

import nbformat
import pytest
from nbconvert.preprocessors import ClearMetadataPreprocessor

from utils.checks.registry import CHECK_MODULES
from utils.grading.review_flags import (
    FLAGS_KEY,
    MAX_CELL_CHARS,
    RULES,
    ReviewFlag,
    flag_submission,
    flags_for,
    instructor_sources,
    notebook_checks,
    other_flags,
    review_notebook,
    review_text,
    store_flags,
    stored_flags,
)
from utils.instructor import review_flags as instructor_list
from utils.instructor.samples import mistakes_for

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(entry.notebook for entry in CHECK_MODULES.values())


def checks_of(notebook: str) -> list[str]:
    entry = next(e for e in CHECK_MODULES.values() if e.notebook == notebook)
    return [f"check_{name}" for name in entry.exercises]


def source_nb(notebook: str):
    return nbformat.read(ROOT / "source" / f"{notebook}.ipynb", as_version=4)


def review(nb, notebook: str, *, skip_instructor: bool = True) -> list[ReviewFlag]:
    sources = instructor_sources(ROOT / "source" / f"{notebook}.ipynb") if skip_instructor else ()
    return review_notebook(nb, student="s1", notebook=notebook, check_names=checks_of(notebook),
                           instructor_sources=sources)


def release_with(notebook: str, cells: dict[str, str] | None = None, added: list[str] = ()):
    """The release notebook with some solution cells answered and some cells added at the end."""
    nb = nbformat.read(ROOT / "release" / f"{notebook}.ipynb", as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cells and grade_id in cells:
            cell.source = cells[grade_id]
    for source in added:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


# --------------------------------------------------------------------------- no false positives

@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_instructors_notebooks_raise_no_flag(notebook):
    """Every code cell of the source notebook, solutions, demos and tests alike, read as if a student wrote it."""
    assert review(source_nb(notebook), notebook, skip_instructor=False) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_sample_mistake_raises_no_flag(notebook):
    assignment, name = notebook.split("/")
    samples = [m for m in mistakes_for(assignment) if m.notebook == name]
    for sample in samples:
        nb = source_nb(notebook)
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == sample.cell)
        for old, new in sample.replace:
            cell.source = cell.source.replace(old, new)
        assert review(nb, notebook) == [], sample.student


def test_the_release_notebooks_raise_no_flag():
    for notebook in NOTEBOOKS:
        assert review(release_with(notebook), notebook) == []


# --------------------------------------------------------------------------- each route is flagged

ROUTES = [
    # (notebook, code of an added cell, rule, text of the flagged line)
    ("rnn/rnn", "import functools\ncell = functools.partial(torch.lstm_cell)\n", "forbidden-api",
     "cell = functools.partial(torch.lstm_cell)"),
    ("rnn/rnn", "def lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):\n"
                "    return torch.ops.aten.lstm_cell(x, (h_prev, c_prev), W_ih, W_hh, b_ih, b_hh)\n",
     "dispatcher-ops", "return torch.ops.aten.lstm_cell("),
    ("rnn/rnn", "def lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):\n"
                "    return torch.ops.aten.lstm_cell(x, (h_prev, c_prev), W_ih, W_hh, b_ih, b_hh)\n",
     "forbidden-api", "return torch.ops.aten.lstm_cell("),
    ("rnn/rnn", "import threading\n", "thread-or-process", "import threading"),
    ("rnn/rnn", "import sys\ndef lstm_cell(*args):\n    sys.setprofile(None)\n    return args\n", "watch-tampering",
     "sys.setprofile(None)"),
    ("rnn/rnn", "@torch.jit.script\ndef helper(x):\n    return x\n", "compiled-code", "@torch.jit.script"),
    ("rnn/rnn", "fast = torch.compile(lambda x: x)\n", "compiled-code", "fast = torch.compile"),
    ("rnn/rnn", "torch._C._autograd._disable_profiler()\n", "torch-internals", "torch._C._autograd"),
    ("rnn/rnn", "torch.nn.modules.module._global_forward_pre_hooks.clear()\n", "watch-tampering",
     "_global_forward_pre_hooks.clear()"),
    ("rnn/rnn", "import ctypes\n", "native-code", "import ctypes"),
    ("rnn/rnn", "import gc\nobjs = gc.get_objects()\n", "introspection", "gc.get_objects()"),
    ("rnn/rnn", "g = check_lstm_cell.__globals__\n", "introspection", "check_lstm_cell.__globals__"),
    ("rnn/rnn", "import sys\nsys.modules['utils.rnn.shared'].lstm_cell_numpy\n", "module-tampering", "sys.modules["),
    ("rnn/rnn", "import importlib\nm = importlib.import_module('utils.rnn.shared')\n", "dynamic-import",
     "importlib.import_module"),
    ("rnn/rnn", "m = __import__('utils.rnn.shared')\n", "dynamic-import", "__import__("),
    ("rnn/rnn", "from utils.rnn.shared import lstm_cell_numpy\n", "course-internals", "from utils.rnn.shared"),
    ("deformable_conv/deformable_conv",
     "from utils.deformable_conv.computations import deform_conv2d_numpy\n", "course-internals",
     "deform_conv2d_numpy"),
    ("deformable_conv/deformable_conv", "import utils.deformable_conv.computations as C\n", "course-internals",
     "import utils.deformable_conv.computations"),
    ("deformable_conv/deformable_conv", "from utils import checks\n", "course-internals", "from utils import checks"),
    ("deformable_conv/deformable_conv", "import utils\nref = utils.deformable_conv.computations\n", "course-internals",
     "ref = utils.deformable_conv.computations"),
    ("deformable_conv/deformable_conv",
     "import pickle\nwith open('.grading/deform.inputs.pkl', 'rb') as f:\n    cases = pickle.load(f)\n",
     "grading-files", "open('.grading/deform.inputs.pkl'"),
    ("deformable_conv/deformable_conv",
     "import pickle\nwith open('.grading/deform.inputs.pkl', 'rb') as f:\n    cases = pickle.load(f)\n",
     "reads-pickles", "import pickle"),
    ("deformable_conv/deformable_conv", "import os\nnames = os.listdir('.')\n", "file-listing", "os.listdir"),
    ("deformable_conv/deformable_conv", "from pathlib import Path\nfound = list(Path('.').rglob('*'))\n",
     "file-listing", "rglob"),
    ("deformable_conv/deformable_conv", "get_ipython().input_transformers_cleanup.append(lambda lines: lines)\n",
     "ipython-hooks", "input_transformers_cleanup"),
    ("deformable_conv/deformable_conv", "ip = get_ipython()\nip.events.register('pre_run_cell', print)\n",
     "ipython-hooks", "ip.events.register"),
    ("deformable_conv/deformable_conv", "exec('x = 1')\n", "dynamic-code", "exec('x = 1')"),
    ("deformable_conv/deformable_conv", "np.allclose = lambda *a, **k: True\n", "patches-module", "np.allclose ="),
    ("deformable_conv/deformable_conv", "!ls -la\n", "thread-or-process", "!ls -la"),
    ("deformable_conv/deformable_conv", "%%bash\nls\n", "ipython-hooks", "%%bash"),
    ("deformable_conv/deformable_conv", "import subprocess\n", "thread-or-process", "import subprocess"),
    ("deformable_conv/deformable_conv",
     "def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):\n"
     "    import torchvision\n"
     "    return torchvision.ops.deform_conv2d(a_l, delta, weight, mask=mask)\n",
     "forbidden-api", "torchvision.ops.deform_conv2d(a_l"),
    ("attention/attention",
     "import torch.nn.functional as G\nattend = getattr(G, 'scaled_dot_' + 'product_attention')\n",
     "dynamic-attribute", "getattr(G,"),
    ("attention/attention", "attend = getattr(F, 'scaled_dot_product_attention')\n", "forbidden-api",
     "getattr(F, 'scaled_dot_product_attention')"),
    ("attention/attention", "import torch.multiprocessing as mp\n", "thread-or-process",
     "import torch.multiprocessing"),
    ("deformable_conv/deformable_conv",
     "\n\nimport importlib\nhelper = importlib.import_module('utils.deformable_conv.' + 'computa' + 'tions')\n",
     "course-internals", "(builds 'utils.deformable_conv.computations')"),
    ("deformable_conv/deformable_conv",
     "import importlib\nm = importlib.import_module('utils')\nf = getattr(m, 'chec' + 'ks')\n",
     "dynamic-attribute", "f = getattr(m, 'chec' + 'ks') (builds 'checks')"),
    ("cnn/cnn_layers", "import builtins\n", "introspection", "import builtins"),
    ("cnn/cnn_layers", "secret = open('../.grading_secret').read()\n", "grading-files", ".grading_secret"),
]


@pytest.mark.parametrize("notebook, code, rule, evidence", ROUTES,
                         ids=[f"{rule}-{i}" for i, (_, _, rule, _) in enumerate(ROUTES)])
def test_each_route_is_flagged_with_its_line(notebook, code, rule, evidence):
    nb = release_with(notebook, added=[code])
    flags = [f for f in review(nb, notebook) if f.rule == rule and evidence in f.evidence]
    assert flags, f"no {rule} flag on the line {evidence!r} of {code!r}"
    flag = flags[0]
    assert flag.cell_index == len(nb.cells) - 1 and flag.line >= 1 and flag.student == "s1"
    assert flag.rule in RULES and RULES[flag.rule] in flag.describe()


def test_a_flag_inside_an_exercise_names_it_and_a_solution_cell_is_read():
    answer = ("import functools\n\n"
              "def lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):\n"
              "    step = functools.partial(torch.lstm_cell)\n"
              "    return step(x, (h_prev, c_prev), W_ih, W_hh, b_ih, b_hh)\n")
    nb = release_with("rnn/rnn", {"lstm_cell": answer})
    flags = review(nb, "rnn/rnn")
    assert [(f.cell, f.line, f.rule, f.function) for f in flags] == [("lstm_cell", 4, "forbidden-api", "lstm_cell")]
    assert flags_for(flags, "lstm_cell") == flags and flags_for(flags, "lstm_forward") == []


def test_a_helper_is_read_with_the_rules_of_the_exercises_that_call_it():
    helpers = ("def _step(x, h, c, W_ih, W_hh, b_ih, b_hh):\n"
               "    return torch.nn.LSTMCell(3, 4)(x, (h, c))\n\n"
               "def lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):\n"
               "    return _step(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh)\n")
    flags = review(release_with("rnn/rnn", {"lstm_cell": helpers}), "rnn/rnn")
    assert [(f.line, f.rule, f.function) for f in flags] == [(2, "forbidden-api", "_step")]


def test_library_code_the_notebook_allows_is_not_flagged():
    """nn.LSTM is what LSTMModel is built from (only lstm_cell and lstm_forward forbid it), and demo code at
    the top level may call library classes."""
    model = ("class LSTMModel(nn.Module):\n"
             "    def __init__(self, input_size, hidden_size, num_layers, output_size):\n"
             "        super().__init__()\n"
             "        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)\n"
             "        self.fc = nn.Linear(hidden_size, output_size)\n")
    demo = "demo = nn.LSTM(3, 4)\nout = demo(torch.zeros(1, 2, 3))\n"
    nb = release_with("rnn/rnn", {"LSTMModel": model}, added=[demo])
    assert review(nb, "rnn/rnn") == []


def test_line_numbers_are_those_of_the_cell_as_written():
    code = "\n\n%matplotlib inline\nx = 1\nimport ctypes\n"
    flags = review(release_with("rnn/rnn", added=[code]), "rnn/rnn")
    assert [(f.line, f.evidence) for f in flags] == [(5, "import ctypes")]


def test_the_students_own_objects_may_be_read_by_computed_names():
    code = ("class Net(nn.Module):\n"
            "    def __init__(self):\n"
            "        super().__init__()\n"
            "        for i in range(2):\n"
            "            setattr(self, f'layer{i}', nn.Linear(2, 2))\n"
            "    def forward(self, x):\n"
            "        for i in range(2):\n"
            "            x = getattr(self, f'layer{i}')(x)\n"
            "        return x\n")
    assert review(release_with("rnn/rnn", added=[code]), "rnn/rnn") == []


def test_harmless_magics_are_not_flagged():
    nb = release_with("rnn/rnn", added=["%matplotlib inline\n%time x = 1\n"])
    assert review(nb, "rnn/rnn") == []


def test_a_cell_with_fake_instructor_metadata_is_still_read():
    nb = release_with("rnn/rnn", added=["import ctypes\n"])
    nb.cells[-1].metadata["nbgrader"] = {"locked": True, "grade": False, "solution": False, "grade_id": "imports",
                                         "schema_version": 3}
    flags = review(nb, "rnn/rnn")
    assert [(f.cell, f.rule) for f in flags] == [("imports", "native-code")]


@pytest.mark.parametrize("code, why", [
    ("def f(:\n    pass\n", "SyntaxError"),
    ("x = " + "(" * 5000 + ")" * 5000 + "\n", "Error"),
    ("x = 1\n" + "#" * (MAX_CELL_CHARS + 1), "characters"),
])
def test_an_unreadable_cell_is_flagged_not_skipped(code, why):
    flags = review(release_with("cnn/cnn_layers", added=[code]), "cnn/cnn_layers")
    assert [f.rule for f in flags] == ["unreadable-cell"] and why in flags[0].evidence


def test_flags_are_bounded_and_evidence_is_short():
    code = "\n".join(f"import ctypes as c{i}  # {'x' * 400}" for i in range(300))
    flags = review(release_with("cnn/cnn_layers", added=[code]), "cnn/cnn_layers")
    assert len(flags) == 201 and flags[-1].rule == "too-many-flags" and "100 more" in flags[-1].evidence
    assert max(len(f.evidence) for f in flags) <= 200


# --------------------------------------------------------------------------- feedback, metadata, instructor list

def flagged_notebook(student: str, notebook: str = "rnn/rnn", code: str = "import threading\n"):
    nb = release_with(notebook, added=[code])
    flags = review_notebook(nb, student=student, notebook=notebook, check_names=checks_of(notebook),
                            instructor_sources=instructor_sources(ROOT / "source" / f"{notebook}.ipynb"))
    store_flags(nb, flags)
    return nb, flags


def test_the_graders_call_reads_a_graded_notebook_and_stores_what_it_found():
    """As ApplyTrustedVerdicts sees a notebook: the test cells are the source's (hidden tests included),
    the answers are the student's."""
    nb = source_nb("attention/attention")
    cell = next(c for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "scaled_dot_product_attention")
    cell.source = cell.source.replace("    ### BEGIN SOLUTION\n", "    ### BEGIN SOLUTION\n    import threading\n")
    nb.cells.append(nbformat.v4.new_code_cell("import ctypes\n"))
    assert notebook_checks("attention/attention") == checks_of("attention/attention")
    flags = flag_submission(nb, student="s9", notebook="attention/attention",
                            source_notebook=ROOT / "source" / "attention" / "attention.ipynb")
    assert [(f.cell, f.rule, f.function) for f in flags] == [
        ("scaled_dot_product_attention", "thread-or-process", "scaled_dot_product_attention"),
        (flags[1].cell, "native-code", "")]
    assert stored_flags(nb.metadata) == flags
    assert flags_for(flags, "scaled_dot_product_attention") == flags[:1]
    assert other_flags(flags, ["scaled_dot_product_attention", "multi_head_attention"]) == flags[1:]


def test_flags_round_trip_through_the_written_notebook(tmp_path):
    nb, flags = flagged_notebook("s1")
    path = tmp_path / "rnn.ipynb"
    nbformat.write(nb, path)
    assert stored_flags(nbformat.read(path, as_version=4).metadata) == flags
    assert stored_flags(json.loads(path.read_text())["metadata"]) == flags


def test_malformed_stored_flags_are_skipped():
    good = {"student": "s", "notebook": "n", "cell": "c", "cell_index": 1, "line": 2, "rule": "native-code",
            "evidence": "import ctypes", "function": ""}
    metadata = {FLAGS_KEY: [good, {**good, "line": "2"}, {**good, "extra": 1}, "junk", {**good, "cell_index": True}]}
    assert stored_flags(metadata) == [ReviewFlag(**good)]
    assert stored_flags({FLAGS_KEY: "junk"}) == [] and stored_flags([]) == []


def test_the_feedback_text_states_the_rule_and_the_evidence():
    _, flags = flagged_notebook("s1")
    text = review_text(flags)
    assert text.startswith("⚑ Flagged for review") and "import threading" in text
    assert "does not change the points" in text
    assert review_text([]) == ""


def test_nbgraders_metadata_cleaner_keeps_the_flags():
    """ClearMetadataPreprocessor runs after the verdicts in nbgrader_config.py; it is off there, and its
    preserve list keeps the flags should it be turned on."""
    tree = ast.parse((ROOT / "nbgrader_config.py").read_text())
    settings = {ast.unparse(node.targets[0]): node.value for node in tree.body if isinstance(node, ast.Assign)}
    assert "c.ClearMetadataPreprocessor.enabled" not in settings
    mask = ast.literal_eval(settings["c.ClearMetadataPreprocessor.preserve_nb_metadata_mask"])
    nb, flags = flagged_notebook("s1")
    cleaned, _ = ClearMetadataPreprocessor(enabled=True, preserve_nb_metadata_mask=mask,
                                           clear_cell_metadata=False).preprocess(copy.deepcopy(nb), {})
    assert stored_flags(cleaned.metadata) == flags
    off, _ = ClearMetadataPreprocessor()(copy.deepcopy(nb), {})
    assert stored_flags(off.metadata) == flags


def autograded_course(tmp_path: Path) -> Path:
    for student, code in (("alice", "import threading\n"), ("bob", None), ("eve", "import ctypes  # \x1b[2J\n")):
        folder = tmp_path / "autograded" / student / "rnn"
        folder.mkdir(parents=True)
        nb = flagged_notebook(student, code=code)[0] if code else release_with("rnn/rnn")
        nbformat.write(nb, folder / "rnn.ipynb")
    return tmp_path


def test_the_instructor_list_shows_each_flagged_student_with_evidence(tmp_path, capsys):
    root = autograded_course(tmp_path)
    assert instructor_list.main(["rnn", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["student", "notebook", "where", "rule", "evidence"]
    alice = next(line for line in lines if line.startswith("alice"))
    assert "rnn/rnn" in alice and "thread-or-process" in alice and "import threading" in alice
    assert "bob" not in out.split("\n\n")[0]
    assert "\x1b" not in out and "\\x1b" in out            # a student's escape sequence is shown, not obeyed
    assert "2 student(s) flagged for review in rnn" in out and "alice, eve" in out


def test_the_instructor_list_follows_no_link_and_reads_no_oversized_file(tmp_path, capsys, monkeypatch):
    root = autograded_course(tmp_path)
    outside = tmp_path / "outside.ipynb"
    nbformat.write(flagged_notebook("mallory", code="import ctypes\n")[0], outside)
    (root / "autograded" / "alice" / "rnn" / "linked.ipynb").symlink_to(outside)
    (root / "autograded" / "linked_student").symlink_to(root / "autograded" / "alice")
    os.mkfifo(root / "autograded" / "bob" / "rnn" / "fifo.ipynb")
    monkeypatch.setattr(instructor_list, "MAX_NOTEBOOK_BYTES", 1000)
    (root / "autograded" / "bob" / "rnn" / "big.ipynb").write_text("{" + " " * 2000 + "}")
    flags, notes = instructor_list.collect(root, "rnn")
    assert {f.student for f in flags} == set()          # every real notebook is over the lowered limit
    assert any("linked.ipynb: a link" in n for n in notes) and any("fifo.ipynb" in n for n in notes)
    assert any("big.ipynb" in n and "more than 1,000" in n for n in notes)
    assert not any("mallory" in n or "linked_student" in n for n in notes)
    monkeypatch.setattr(instructor_list, "MAX_NOTEBOOK_BYTES", 64 * 2**20)
    flags, _ = instructor_list.collect(root, "rnn")
    assert sorted({f.student for f in flags}) == ["alice", "eve"]   # not mallory, reached only through links


def test_flags_planted_in_a_notebook_name_only_the_student_whose_folder_holds_it(tmp_path):
    """A student cannot frame a classmate: who was flagged comes from the autograded path."""
    root = autograded_course(tmp_path)
    planted = flagged_notebook("bob", code="import ctypes\n")[0]     # flags that name bob...
    nbformat.write(planted, root / "autograded" / "alice" / "rnn" / "rnn.ipynb")   # ...in alice's notebook
    flags, _ = instructor_list.collect(root, "rnn")
    assert "bob" not in {f.student for f in flags} and "alice" in {f.student for f in flags}


def test_the_grader_drops_review_flags_a_submission_brought_along():
    from utils.grading.preprocessors import ApplyTrustedVerdicts
    nb = release_with("rnn/rnn")
    nb.metadata["course_review_flags"] = [{"student": "bob"}]
    nb, _ = ApplyTrustedVerdicts().preprocess(nb, {})
    assert "course_review_flags" not in nb.metadata
