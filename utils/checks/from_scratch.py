"""From scratch means from scratch: notice any use of the library an answer is compared with, while it runs.

An exercise lists the library functions and classes its answer must not use
(``Exercise.forbidden``: ``"torch.nn.LSTMCell"``, ``"torchvision.ops.deform_conv2d"``, ...).
:class:`ForbiddenUse` watches the student's function with three watches, each covering routes the
others miss:

* **Python calls** (``sys.setprofile`` in this thread, ``threading.setprofile`` for threads started
  meanwhile): a call of a forbidden function, or of a forbidden class's ``forward``, under any alias;
  it names the API as the student wrote it.
* **Module calls**: a global ``nn.Module`` forward pre-hook sees a forbidden module (``nn.LSTMCell``,
  ``nn.MultiheadAttention``, torchvision's ``BasicBlock``, or a subclass of one) called in any thread.
* **Operations**: the torch profiler, on every thread, records each aten/torchvision operation that
  runs. The operations behind a forbidden API (:data:`FORBIDDEN_OPS`, e.g. ``aten::lstm_cell``) are
  recognised however they were reached: ``functools.partial``, ``torch.ops.aten``, a TorchScript
  function, another thread, or after ``sys.setprofile(None)``.

Each watch also checks, at the end, that it was still in place: an answer that switched one off
(``sys.setprofile``, stopping the profiler, removing the hook) fails as if it had called the library.
Honest answers use only generic operations (``matmul``, ``softmax``, ``sigmoid``, NumPy), which no
forbidden API maps to.

What a process cannot watch in itself (another process, ctypes, code compiled before the check, a
watch switched off and on again) is left to the grader's review of the submitted code
(``utils/grading/review_flags.py``), which flags such code for an instructor.

Torch is never imported here: the operation and module watches start only when the student's kernel
has already imported it (the NumPy notebooks are graded in a kernel that cannot).
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any

from utils.checks.feedback import Report

# API path -> the dispatcher operations that only it (or the library code behind it) runs. Only
# operations an honest answer never needs: a convolution written in NumPy runs no aten::conv2d, an
# attention written with matmul and softmax runs no aten::scaled_dot_product_attention.
_LSTM_CELL_OPS = ("aten::lstm_cell", "aten::_thnn_fused_lstm_cell")
_RNN_CELL_OPS = ("aten::rnn_tanh_cell", "aten::rnn_relu_cell", "aten::_thnn_fused_gru_cell")
_SDPA_OPS = ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product_attention_math",
             "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_flash_attention_for_cpu",
             "aten::_scaled_dot_product_efficient_attention", "aten::_scaled_dot_product_cudnn_attention",
             "aten::_scaled_dot_product_fused_attention_overrideable",
             "aten::_scaled_dot_product_attention_math_for_mps")
_CONV2D_OPS = ("aten::conv2d", "aten::convolution", "aten::_convolution", "aten::convolution_backward",
               "aten::thnn_conv2d", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
               "aten::mkldnn_convolution", "aten::cudnn_convolution", "aten::_nnpack_spatial_convolution")
_MAX_POOL_OPS = ("aten::max_pool2d", "aten::max_pool2d_with_indices", "aten::max_pool2d_with_indices_backward",
                 "aten::mkldnn_max_pool2d", "aten::quantized_max_pool2d")
_AVG_POOL_OPS = ("aten::avg_pool2d", "aten::avg_pool2d_backward", "aten::mkldnn_avg_pool2d")
_BATCH_NORM_OPS = ("aten::batch_norm", "aten::_batch_norm_impl_index", "aten::native_batch_norm",
                   "aten::native_batch_norm_backward", "aten::_native_batch_norm_legit",
                   "aten::_native_batch_norm_legit_no_training", "aten::_batch_norm_with_update",
                   "aten::_batch_norm_no_update", "aten::batch_norm_backward", "aten::cudnn_batch_norm",
                   "aten::miopen_batch_norm")
_DEFORM_OPS = ("torchvision::deform_conv2d", "torchvision::_deform_conv2d_backward")

FORBIDDEN_OPS: dict[str, tuple[str, ...]] = {
    "torch.nn.LSTMCell": _LSTM_CELL_OPS,
    "torch.lstm_cell": _LSTM_CELL_OPS,
    "torch.nn.LSTM": ("aten::lstm",),
    "torch.lstm": ("aten::lstm",),
    "torch.nn.RNN": ("aten::rnn_tanh", "aten::rnn_relu"),
    "torch.rnn_tanh": ("aten::rnn_tanh",),
    "torch.nn.RNNCell": _RNN_CELL_OPS,
    "torch.rnn_tanh_cell": ("aten::rnn_tanh_cell",),
    "torch.nn.functional.scaled_dot_product_attention": _SDPA_OPS,
    # The library's fused paths (eval mode, no autograd); in training mode they run Python code,
    # which the Python and module watches see.
    "torch.nn.MultiheadAttention": ("aten::_native_multi_head_attention",),
    "torch.nn.TransformerEncoderLayer": ("aten::_transformer_encoder_layer_fwd",),
    "torch.nn.functional.conv2d": _CONV2D_OPS,
    "torch.conv2d": _CONV2D_OPS,
    "torch.nn.Conv2d": _CONV2D_OPS,
    "torch.nn.functional.max_pool2d": _MAX_POOL_OPS,
    "torch.max_pool2d": _MAX_POOL_OPS,
    "torch.nn.MaxPool2d": _MAX_POOL_OPS,
    "torch.nn.functional.avg_pool2d": _AVG_POOL_OPS,
    "torch.nn.AvgPool2d": _AVG_POOL_OPS,
    "torch.nn.functional.batch_norm": _BATCH_NORM_OPS,
    "torch.batch_norm": _BATCH_NORM_OPS,
    "torch.nn.BatchNorm2d": _BATCH_NORM_OPS,
    "torch.nn.functional.grid_sample": ("aten::grid_sampler", "aten::grid_sampler_2d",
                                        "aten::_grid_sampler_2d_cpu_fallback", "aten::cudnn_grid_sampler"),
    "torchvision.ops.deform_conv2d": _DEFORM_OPS,
    "torchvision.ops.DeformConv2d": _DEFORM_OPS,
}

# Names of the profiler events that open and close a watch: both must be in what the profiler
# returns, or the profiler was stopped (or replaced) while the answer ran.
_OPENED, _CLOSED = "course::from_scratch_watch_opened", "course::from_scratch_watch_closed"


def resolve(path: str) -> Any:
    """The object at a dotted path, or None when its module is not imported (so it was not called)."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is not None:
            obj = module
            try:
                for name in parts[split:]:
                    obj = getattr(obj, name)
            except AttributeError:
                return None
            return obj
    return None


def forbidden_ops(paths: tuple[str, ...]) -> dict[str, list[str]]:
    """Operation name -> the forbidden APIs (in ``paths``' order) that run it."""
    ops: dict[str, list[str]] = {}
    for path in paths:
        for op in FORBIDDEN_OPS.get(path, ()):
            ops.setdefault(op, []).append(path)
    return ops


class ForbiddenUse:
    """A context manager that watches the code it encloses for uses of the ``paths`` it forbids.

    After the block: ``found`` names the first forbidden use seen ("" if none), ``switched_off`` says
    which watch the code switched off ("" if none), and ``unavailable`` why a watch could not start
    (another profiler was already running).
    """

    def __init__(self, paths: tuple[str, ...]):
        self.paths = paths
        self.found = ""
        self.switched_off = ""
        self.unavailable = ""
        self._codes: dict[Any, str] = {}
        self._builtins: dict[int, str] = {}
        self._classes: list[tuple[type, str]] = []
        torch = sys.modules.get("torch")
        module_base = getattr(getattr(torch, "nn", None), "Module", None)
        for path in paths:
            obj = resolve(path)
            if obj is None:
                continue
            if isinstance(obj, type):
                if module_base is not None and issubclass(obj, module_base):
                    self._classes.append((obj, path))
                obj = getattr(obj, "forward", None) or obj.__call__
            code = getattr(obj, "__code__", None)
            if code is not None:
                self._codes.setdefault(code, path)
            else:
                self._builtins.setdefault(id(obj), path)
        self._ops = forbidden_ops(paths) if torch is not None else {}
        self._torch = torch
        self._hook = self._event            # one bound method, so that getprofile() can be compared with it
        self._module_hook = None
        self._profiling = False

    # ------------------------------------------------------------------ the three watches

    def __enter__(self):
        self._previous = sys.getprofile()
        self._previous_threads = threading.getprofile()
        if self._codes or self._builtins:
            sys.setprofile(self._hook)
            threading.setprofile(self._hook)
        if self._classes:
            self._module_hook = self._torch.nn.modules.module.register_module_forward_pre_hook(self._on_module)
        if self._ops:
            self._start_profiler()
        return self

    def __exit__(self, *exc):
        if (self._codes or self._builtins) and sys.getprofile() is not self._hook:
            self._note_switched_off("the Python profiler the check watches calls with (sys.setprofile) was "
                                    "replaced")
        sys.setprofile(self._previous)
        threading.setprofile(self._previous_threads)
        if self._module_hook is not None:
            hooks = self._torch.nn.modules.module._global_forward_pre_hooks
            if self._module_hook.id not in hooks:
                self._note_switched_off("the module hook the check watches nn.Module calls with was removed")
            self._module_hook.remove()
        if self._profiling:
            self._stop_profiler()
        return False

    def _note(self, what: str) -> None:
        if not self.found:
            self.found = what

    def _note_switched_off(self, what: str) -> None:
        if not self.switched_off:
            self.switched_off = what

    def _event(self, frame, event, arg):
        if self.found:
            return
        if event == "call":
            path = self._codes.get(frame.f_code)
            if path:
                self._note(path)
        elif event == "c_call":
            path = self._builtins.get(id(arg))
            if path:
                self._note(path)

    def _on_module(self, module, args):
        for cls, path in self._classes:
            if isinstance(module, cls):
                self._note(path)
                return

    def _start_profiler(self) -> None:
        # Kineto logs every start and stop on stderr unless told not to; it reads this when first used.
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
        from torch._C._autograd import _enable_profiler, _prepare_profiler, _profiler_type
        from torch._C._profiler import (
            ActiveProfilerType,
            ProfilerActivity,
            ProfilerConfig,
            ProfilerState,
            _ExperimentalConfig,
        )

        busy = ("a torch profiler was already running, so the check could not watch which operations your "
                "function runs")
        if _profiler_type() != ActiveProfilerType.NONE or self._torch.autograd.profiler._is_profiler_enabled:
            self.unavailable = busy
            return
        config = ProfilerConfig(ProfilerState.KINETO, False, False, False, False, False,
                                _ExperimentalConfig(profile_all_threads=True))
        activities = {ProfilerActivity.CPU}
        try:
            _prepare_profiler(config, activities)
            _enable_profiler(config, activities)
        except RuntimeError:   # "Profiler is already enabled": one profiling all threads is running
            self.unavailable = busy
            return
        self._profiling = True
        with self._torch.autograd.profiler.record_function(_OPENED):
            pass

    def _stop_profiler(self) -> None:
        from torch._C._autograd import _disable_profiler

        self._profiling = False
        with self._torch.autograd.profiler.record_function(_CLOSED):
            pass
        try:
            names = {event.name() for event in _disable_profiler().events()}
        except RuntimeError:   # the profiler was stopped, or one of another kind put in its place
            names = set()
        # Both marks are in the profiler's record only if it ran, the same one, from start to end.
        if _OPENED not in names or _CLOSED not in names:
            self._note_switched_off("the torch profiler the check watches operations with was stopped or replaced")
        seen = [op for op in self._ops if op in names]   # in the table's order: the public operation first
        if seen:
            op = seen[0]
            self._note(f"{' or '.join(self._ops[op])} (its operation {op} ran)")


def from_scratch_report(exercise, called: str, label: str = "", description: str = "") -> Report:
    """The report of an answer that used the library its exercise is compared with."""
    return Report(
        headline=f"{exercise.function} must be written from scratch, but it called {called}",
        case=f"{label}: {description}" if label else "",
        details=[f"{called.split(' (')[0]} computes the reference this exercise is compared with; an answer that "
                 "calls it earns no points for this exercise."],
        hint="write the computation yourself from the formulas above (NumPy / basic tensor operations).")


def switched_off_report(exercise, what: str, label: str = "", description: str = "") -> Report:
    """The report of an answer that switched off a watch of :class:`ForbiddenUse`."""
    return Report(
        headline=f"{exercise.function} must be written from scratch, but it switched off the check's watch "
                 "for library calls",
        case=f"{label}: {description}" if label else "",
        details=[f"While your function ran, {what}.",
                 "An answer that hides what it calls earns no points for this exercise; it is also flagged "
                 "for review by an instructor."],
        hint="remove the code that changes profilers, tracers or hooks, and write the computation yourself.")


def unavailable_report(exercise, why: str, label: str = "", description: str = "") -> Report:
    """The report of a case the watch could not be started for."""
    return Report(
        headline=f"{exercise.function} could not be checked: {why}",
        case=f"{label}: {description}" if label else "",
        hint="stop your profiler (leave its `with torch.profiler.profile():` block) before running the check.")
