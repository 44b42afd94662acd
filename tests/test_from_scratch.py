"""From scratch means from scratch: an answer that calls the library it is compared with fails.

The visible checks watch the calls the student's code makes (aliases included), the nn.Module calls
and the torch operations that run, in every thread (utils/checks/from_scratch.py); the trusted
grader also looks for the library name in the answer's own code. Each route around the rule a
student might take is tried here and must fail its check; in the NumPy notebooks, the grading
kernel cannot import the course's own NumPy reference (the precompute route).
"""
import ast
import functools
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from notebook_solutions import NotebookSolutions
from utils import check_conv2d_forward, check_deform_conv2d, check_lstm_cell, check_scaled_dot_product_attention
from utils.checks.feedback import CheckFailure
from utils.checks.from_scratch import FORBIDDEN_OPS, ForbiddenUse
from utils.checks.registry import exercise
from utils.grading.trusted import forbidden_reference


def sdpa_via_torch(q, k, v, mask=None):
    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
                            + (0 if mask is None else torch.where(mask, 0.0, float("-inf"))), dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights


def test_attention_calling_torch_sdpa_is_rejected_by_name():
    with pytest.raises(CheckFailure, match=r"must be written from scratch, but it called "
                                           r"torch\.nn\.functional\.scaled_dot_product_attention"):
        check_scaled_dot_product_attention(sdpa_via_torch)


def test_an_alias_of_the_library_function_is_caught_too():
    from torch.nn.functional import scaled_dot_product_attention as renamed

    def sdpa(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return renamed(q, k, v, attn_mask=mask), torch.softmax(scores, dim=-1)

    with pytest.raises(CheckFailure, match="must be written from scratch"):
        check_scaled_dot_product_attention(sdpa)


def test_lstm_cell_wrapping_nn_lstmcell_is_rejected():
    def lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
        cell = torch.nn.LSTMCell(W_ih.shape[1], W_hh.shape[1]).to(x.dtype)
        with torch.no_grad():
            for p, v in zip(cell.parameters(), (W_ih, W_hh, b_ih, b_hh), strict=True):
                p.copy_(v)
        return cell(x, (h_prev, c_prev))

    with pytest.raises(CheckFailure, match=r"called torch\.nn\.LSTMCell"):
        check_lstm_cell(lstm_cell)


def test_numpy_convolution_through_torch_is_rejected():
    def conv2d_forward(x, w, b, stride=1, padding=0):
        out = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride, padding=padding)
        return out.numpy()

    with pytest.raises(CheckFailure, match=r"called torch\.nn\.functional\.conv2d"):
        check_conv2d_forward(conv2d_forward)


def test_deform_conv2d_wrapping_torchvision_is_rejected():
    import torchvision

    def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
        def t(a):
            return torch.from_numpy(np.asarray(a, dtype=np.float64))

        return torchvision.ops.deform_conv2d(t(a_l), t(delta), t(weight), stride=stride, padding=padding,
                                             dilation=dilation, mask=t(mask)).numpy()

    with pytest.raises(CheckFailure, match=r"called torchvision\.ops\.deform_conv2d"):
        check_deform_conv2d(deform_conv2d)


def test_the_call_watcher_restores_the_profiler():
    def sentinel(*args):
        return None

    sys.setprofile(sentinel)
    try:
        with pytest.raises(CheckFailure):
            check_scaled_dot_product_attention(sdpa_via_torch)
        assert sys.getprofile() is sentinel
    finally:
        sys.setprofile(None)


@pytest.mark.parametrize("source, expected", [
    ("def f(q, k, v, mask=None):\n    return F.scaled_dot_product_attention(q, k, v), None\n",
     "torch.nn.functional.scaled_dot_product_attention"),
    ("def f(q, k, v, mask=None):\n    from torch.nn.functional import scaled_dot_product_attention\n"
     "    return scaled_dot_product_attention(q, k, v), None\n",
     "torch.nn.functional.scaled_dot_product_attention"),
    ("def f(q, k, v, mask=None):\n    return my_attention(q, k, v)\n", ""),
])
def test_the_trusted_grader_finds_library_names_in_the_answer(source, expected):
    definition = ast.parse(source).body[0]
    assert forbidden_reference(definition, exercise("check_scaled_dot_product_attention").forbidden) == expected


# --------------------------------------------------------------------------- routes around the watch

def _lstm_weights():
    g = torch.Generator().manual_seed(0)
    x, h, c = (torch.randn(2, n, dtype=torch.float64, generator=g) for n in (3, 4, 4))
    W_ih = torch.randn(16, 3, dtype=torch.float64, generator=g)
    W_hh = torch.randn(16, 4, dtype=torch.float64, generator=g)
    return x, h, c, W_ih, W_hh


def lstm_via_partial(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    return functools.partial(torch.lstm_cell)(x, (h_prev, c_prev), W_ih, W_hh, b_ih, b_hh)


def lstm_in_a_thread(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    out = []
    worker = threading.Thread(target=lambda: out.append(torch.lstm_cell(x, (h_prev, c_prev), W_ih, W_hh, b_ih, b_hh)))
    worker.start()
    worker.join()
    return out[0]


def lstm_after_setprofile_none(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    sys.setprofile(None)
    return torch.lstm_cell(x, (h_prev, c_prev), W_ih, W_hh, b_ih, b_hh)


def lstm_module_with_the_profiler_put_back(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    saved = sys.getprofile()
    sys.setprofile(None)
    try:
        cell = torch.nn.LSTMCell(W_ih.shape[1], W_hh.shape[1]).to(x.dtype)
        with torch.no_grad():
            for p, v in zip(cell.parameters(), (W_ih, W_hh, b_ih, b_hh), strict=True):
                p.copy_(v)
        return cell(x, (h_prev, c_prev))
    finally:
        sys.setprofile(saved)


def lstm_via_aten(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    return torch.ops.aten.lstm_cell(x, (h_prev, c_prev), W_ih, W_hh, b_ih, b_hh)


@functools.cache
def _scripted_cell():
    def cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
        return torch.lstm_cell(x, (h, c), W_ih, W_hh, b_ih, b_hh)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch.jit.script is deprecated, not gone
        return torch.jit.script(cell)


def lstm_via_torchscript(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    return _scripted_cell()(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh)   # compiled before the check ran


def lstm_after_stopping_the_profiler(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    torch._C._autograd._disable_profiler()
    return torch.lstm_cell(x, (h_prev, c_prev), W_ih, W_hh, b_ih, b_hh)


def lstm_module_after_removing_the_hook(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    torch.nn.modules.module._global_forward_pre_hooks.clear()
    return lstm_module_with_the_profiler_put_back(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh)


@pytest.mark.parametrize("answer, expected", [
    (lstm_via_partial, r"called torch\.nn\.LSTMCell or torch\.lstm_cell \(its operation aten::lstm_cell ran\)"),
    (lstm_in_a_thread, r"called torch\.lstm_cell"),
    (lstm_after_setprofile_none, r"switched off the check's watch"),
    (lstm_module_with_the_profiler_put_back, r"called torch\.nn\.LSTMCell"),
    (lstm_via_aten, r"its operation aten::lstm_cell ran"),
    (lstm_via_torchscript, r"its operation aten::lstm_cell ran"),
    (lstm_after_stopping_the_profiler, r"switched off the check's watch"),
    (lstm_module_after_removing_the_hook, r"switched off the check's watch"),
], ids=lambda v: v.__name__ if callable(v) else "message")
def test_every_route_around_the_watch_fails_the_check(answer, expected):
    _scripted_cell()   # a TorchScript helper is compiled at the top of the notebook, before any check
    with pytest.raises(CheckFailure, match=expected) as failure:
        check_lstm_cell(answer)
    assert "Case 1 of" in failure.value.report.case
    assert sys.getprofile() is None and threading.getprofile() is None   # every watch was put back


def test_a_watch_switched_off_is_named_in_the_feedback():
    with pytest.raises(CheckFailure) as failure:
        check_lstm_cell(lstm_after_setprofile_none)
    text = failure.value.report.text()
    assert "sys.setprofile" in text and "flagged for review" in text


def test_attention_through_torch_ops_is_caught_by_its_operation():
    def sdpa(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.ops.aten.scaled_dot_product_attention(q, k, v, attn_mask=mask), torch.softmax(scores, -1)

    with pytest.raises(CheckFailure, match=r"called torch\.nn\.functional\.scaled_dot_product_attention "
                                           r"\(its operation aten::scaled_dot_product_attention ran\)"):
        check_scaled_dot_product_attention(sdpa)


def test_library_attention_in_a_silent_thread_is_caught_by_the_module_hook():
    def multi_head_attention(query, key, value, params, num_heads, mask=None):
        d = query.shape[-1]
        layer = torch.nn.MultiheadAttention(d, num_heads, batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            layer.in_proj_weight.copy_(torch.cat([params["W_q"], params["W_k"], params["W_v"]]))
            layer.in_proj_bias.copy_(torch.cat([params["b_q"], params["b_k"], params["b_v"]]))
            layer.out_proj.weight.copy_(params["W_o"])
            layer.out_proj.bias.copy_(params["b_o"])
        attn_mask = None
        if mask is not None:
            B, T_q, T_k = query.shape[0], query.shape[1], key.shape[1]
            attn_mask = ~mask.expand(B, num_heads, T_q, T_k).reshape(B * num_heads, T_q, T_k)
        out = []

        def run():   # a thread of its own, with Python's profiler switched off there
            sys.setprofile(None)
            out.append(layer(query, key, value, attn_mask=attn_mask, need_weights=False)[0])

        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
        return out[0]

    from utils import check_multi_head_attention
    with pytest.raises(CheckFailure, match=r"called torch\.nn\.MultiheadAttention"):
        check_multi_head_attention(multi_head_attention)


def test_torchvision_operator_called_directly_is_caught():
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
        def t(a):
            return torch.from_numpy(np.asarray(a, dtype=np.float64))

        out = torch.ops.torchvision.deform_conv2d(
            t(a_l), t(weight), t(delta), t(mask), torch.zeros(weight.shape[0], dtype=torch.float64),
            stride, stride, padding, padding, dilation, dilation, 1, 1, True)
        return out.numpy()

    with pytest.raises(CheckFailure, match=r"its operation torchvision::deform_conv2d ran"):
        check_deform_conv2d(deform_conv2d)


def test_an_honest_answer_runs_no_forbidden_operation():
    def lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
        i, f, g, o = (x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    check_lstm_cell(lstm_cell)   # no CheckFailure
    assert sys.getprofile() is None


def test_a_profiler_already_running_is_reported_not_blamed():
    def lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
        raise AssertionError("the check must not run the answer when it cannot watch it")

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        with pytest.raises(CheckFailure, match="could not be checked: a torch profiler was already running"):
            check_lstm_cell(lstm_cell)


# The operations behind each API, found by running the API itself: the table of from_scratch.FORBIDDEN_OPS
# must name an operation each one really runs (torch 2.14 names them as below).
def _api_calls():
    import torchvision
    F_ = torch.nn.functional
    x, h, c, W_ih, W_hh = _lstm_weights()
    image = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    q = torch.randn(1, 3, 4)
    seq = torch.randn(5, 1, 3, dtype=torch.float64)
    return {
        "torch.lstm_cell": lambda: torch.lstm_cell(x, (h, c), W_ih, W_hh),
        "torch.nn.LSTMCell": lambda: torch.nn.LSTMCell(3, 4).double()(x),
        "torch.nn.LSTM": lambda: torch.nn.LSTM(3, 4).double()(seq),
        "torch.nn.RNN": lambda: torch.nn.RNN(3, 4).double()(seq),
        "torch.nn.RNNCell": lambda: torch.nn.RNNCell(3, 4).double()(x),
        "torch.nn.functional.scaled_dot_product_attention": lambda: F_.scaled_dot_product_attention(q, q, q),
        "torch.nn.MultiheadAttention": lambda: torch.no_grad()(
            lambda: torch.nn.MultiheadAttention(4, 2, batch_first=True).eval()(q, q, q))(),
        "torch.nn.TransformerEncoderLayer": lambda: torch.no_grad()(
            lambda: torch.nn.TransformerEncoderLayer(4, 2, 8, batch_first=True).eval()(q))(),
        "torch.nn.functional.conv2d": lambda: F_.conv2d(image, weight).sum().backward(),
        "torch.nn.functional.max_pool2d": lambda: F_.max_pool2d(image, 2).sum().backward(),
        "torch.nn.functional.avg_pool2d": lambda: F_.avg_pool2d(image, 2).sum().backward(),
        "torch.nn.functional.batch_norm": lambda: F_.batch_norm(image, None, None, training=True).sum().backward(),
        "torch.nn.functional.grid_sample": lambda: F_.grid_sample(
            image, torch.zeros(1, 2, 2, 2, dtype=torch.float64), align_corners=False),
        "torchvision.ops.deform_conv2d": lambda: torchvision.ops.deform_conv2d(
            image.detach(), torch.zeros(1, 18, 4, 4, dtype=torch.float64), weight),
    }


@pytest.mark.parametrize("path", sorted(_api_calls()))
def test_each_mapped_api_is_recognised_by_its_operations_alone(path):
    call = _api_calls()[path]
    assert path in FORBIDDEN_OPS
    watch = ForbiddenUse((path,))
    watch._codes.clear()      # only the operation watch: as if the call were hidden from Python
    watch._builtins.clear()
    watch._classes.clear()
    with watch:
        worker = threading.Thread(target=call)
        worker.start()
        worker.join()
    assert not watch.switched_off
    assert "its operation" in watch.found and path in watch.found


def test_every_forbidden_api_with_an_operation_is_mapped_the_same_for_its_aliases():
    for ops in FORBIDDEN_OPS.values():
        assert ops and all(op.startswith(("aten::", "torchvision::")) for op in ops)
    assert FORBIDDEN_OPS["torch.lstm_cell"] == FORBIDDEN_OPS["torch.nn.LSTMCell"]
    conv = FORBIDDEN_OPS["torch.nn.functional.conv2d"]
    assert FORBIDDEN_OPS["torch.conv2d"] == conv == FORBIDDEN_OPS["torch.nn.Conv2d"]


# --------------------------------------------------------------------------- the NumPy-only notebooks' kernels

def _from_scratch_config() -> dict[str, list[str]]:
    """c.SandboxedExecute.from_scratch, read from nbgrader_config.py without running it."""
    tree = ast.parse((Path(__file__).resolve().parents[1] / "nbgrader_config.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "c.SandboxedExecute.from_scratch":
            return ast.literal_eval(node.value)
    raise AssertionError("nbgrader_config.py sets no c.SandboxedExecute.from_scratch")


# What runs in the grading kernel, with the blocked modules made unimportable as the sandbox does.
_KERNEL_SCRIPT = textwrap.dedent('''
    import importlib.abc, pickle, sys
    blocked, cells, payload = pickle.load(open(sys.argv[1], "rb"))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in blocked):
                raise ImportError(f"{name} is blocked")
            return None

    sys.meta_path.insert(0, Blocker())
    from utils.checks.exercise import Case, produce
    from utils.checks.registry import exercise
    from utils.grading.in_kernel.recording import record  # noqa: F401  (what the test cell imports)

    namespace = {}
    for code in cells:
        exec(code, namespace)
    results = {}
    for check, cases in payload:
        ex = exercise(check)
        errors = []
        for inputs in cases:
            produced = produce(ex, namespace[ex.function], Case("", inputs), "")
            if produced.error is not None:
                errors.append(produced.error.text())
        results[check] = errors
    results["__imported__"] = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in blocked))
    for name in blocked:
        try:
            __import__(name)
            results[name] = "imported"
        except ImportError as exc:
            results[name] = str(exc)
    print("RESULT" + repr(results))
''')


@pytest.mark.parametrize("notebook", sorted(_from_scratch_config()))
def test_the_grading_kernel_runs_every_answer_without_the_course_reference(notebook, tmp_path):
    """The precompute route is closed: in the kernel that grades a NumPy notebook, the course's NumPy
    reference (and torch) cannot be imported, yet every exercise's solution is called as in grading."""
    from utils.checks.registry import CHECK_MODULES

    blocked = _from_scratch_config()[notebook]
    assert any(name.startswith("utils.") for name in blocked), "the course's NumPy reference is not blocked"
    entry = next(e for e in CHECK_MODULES.values() if e.notebook == notebook)
    path = Path(__file__).resolve().parents[1] / "source" / f"{notebook}.ipynb"
    solutions = NotebookSolutions(path)
    imports = [c.source for c in nbformat.read(path, as_version=4).cells
               if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "imports"]
    payload = [(f"check_{name}", [c.inputs for c in exercise(f"check_{name}").make_cases(True)])
               for name in entry.exercises]
    job = tmp_path / "job.pkl"
    job.write_bytes(pickle.dumps((blocked, imports + list(solutions.cells.values()), payload)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", _KERNEL_SCRIPT, str(job)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = ast.literal_eval(proc.stdout.split("RESULT", 1)[1])
    assert results.pop("__imported__") == []
    for name in blocked:
        assert results.pop(name) == f"{name} is blocked"
    assert results == {f"check_{name}": [] for name in entry.exercises}


@pytest.mark.parametrize("module", ["utils.deformable_conv", "utils.cnn.layers"])
def test_reference_modules_are_imported_only_inside_functions(module):
    """Statically: no module of a NumPy notebook's package imports a blocked reference module at module
    level (so importing the package, as the kernel does, never needs it)."""
    blocked = {name for names in _from_scratch_config().values() for name in names if name.startswith("utils.")}
    package = Path(__file__).resolve().parents[1] / Path(*module.split("."))
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name in blocked for name in names), f"{path.name} imports {names} at module level"


def test_a_meta_path_blocker_makes_one_module_file_unimportable():
    """The kernel test's way of blocking a module works on one module of a package that stays importable."""
    script = textwrap.dedent('''
        import importlib.abc, sys
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "utils.cnn.layers.computations":
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Blocker())
        import utils.cnn.layers
        try:
            import utils.cnn.layers.computations
        except ImportError:
            print("blocked")
    ''')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.stdout.strip() == "blocked", proc.stderr[-2000:]
