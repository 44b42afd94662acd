"""What the two U-Net checks share: the reference networks, the per-block trace and the cases.

Both networks have the same named blocks (section 2's table), for ``C_k = base_channels · 2**k``:

* ``down[k]`` (k = 0 … depth−1): ``double_conv``, encoder at resolution 1/2**k, output (B, C_k, H/2**k, W/2**k);
* ``bottleneck``: ``double_conv(C_{depth−1}, C_depth)`` after the last max pooling;
* (the hybrid only) ``norm = LayerNorm(C_depth)`` and ``attn = MultiheadAttention(C_depth, heads, batch_first=True)``
  on the bottleneck's h·w tokens (B, h·w, C_depth);
* ``up[k]``: ``ConvTranspose2d(C_{k+1}, C_k, 2, stride=2)`` and ``dec[k]``: ``double_conv(2·C_k, C_k)`` on
  ``cat([skip_k, up[k](x)], dim=1)``, for k = depth−1 down to 0;
* ``head``: ``Conv2d(C_0, num_classes, 1)``, logits (B, num_classes, H, W).

An output case loads the check's weights into the student's module (``load_state_dict(strict=True)``, as in
:mod:`utils.cnn.architectures.shared`), runs it in float64 with a forward hook on every block, and compares
the *trace*: every block's output in forward order, then the returned logits, as one flat list. Each block
starts a named region of the trace ("the blocks from dec[1] (decoder, 1/2 resolution) on"), so a difference
is reported from the first block where it appears: the scale at which the student's network goes wrong. A
block that never runs, runs twice or gives another shape than the table breaks a rule, named with its scale;
an error raised inside the forward says which block ran last. A "reject" case gives an input whose size is
not a multiple of 2**depth: the forward must raise a ValueError.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks.adapters import returned_array
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.rules import RuleBroken, kept_unchanged
from utils.checks.seeding import case_rng
from utils.cnn.architectures.shared import (
    FLOAT64_MODULE,
    INPUT_RULE,
    TRAIN_PARTS,
    VariantDoesNotApply,
    _load,
    build_student,
    on_meta,
    parameter_count,
    random_state,
    state_tensors,
)

SIZE_RULE = "forward raises a ValueError when H or W is not a multiple of 2**depth (section 2, “The rule on sizes”)"
ONCE_RULE = "every block of section 2's table runs exactly once in forward, in the table's order"
SHAPE_RULE = "every block's output has the shape given in section 2's table"

# --------------------------------------------------------------------------- the reference networks


class _ReluBeforeNorm(nn.Sequential):
    """The double convolution with the same layers (and state_dict names), run conv → ReLU → BN."""

    def forward(self, x):
        for i in (0, 3):
            x = self[i + 1](F.relu(self[i](x)))
        return x


def double_conv_reference(in_channels, out_channels, bias=False, relu_first=False) -> nn.Sequential:
    """(Conv3×3 → BN → ReLU) × 2; ``relu_first`` runs ReLU before BN (a catalogued mistake)."""
    layers = []
    for c_in in (in_channels, out_channels):
        layers += [nn.Conv2d(c_in, out_channels, 3, padding=1, bias=bias), nn.BatchNorm2d(out_channels), nn.ReLU()]
    return _ReluBeforeNorm(*layers) if relu_first else nn.Sequential(*layers)


def sinusoidal_positions(n_tokens: int, dim: int, dtype=torch.float64) -> torch.Tensor:
    """(n_tokens, dim): sin(n / 10000^(2i/dim)) in even columns, cos in odd ones."""
    position = torch.arange(n_tokens, dtype=dtype)[:, None]
    freq = torch.pow(torch.tensor(10000.0, dtype=dtype), -torch.arange(0, dim, 2, dtype=dtype) / dim)
    pe = torch.zeros(n_tokens, dim, dtype=dtype)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)
    return pe


class UNetReference(nn.Module):
    """Section 2's U-Net, with the switches of the mistake catalogue (all off: the reference)."""

    def __init__(self, in_channels, num_classes, base_channels=16, depth=3, skip="cat", no_skip_at=None,
                 cat_order="skip_first", pool="max", head_act=None, bias=False, relu_first=False):
        super().__init__()
        c = [base_channels * 2 ** k for k in range(depth + 1)]
        self.depth, self.pool, self.head_act, self.cat_order = depth, pool, head_act, cat_order
        self.skip_at = {k: skip for k in range(depth)}
        if no_skip_at is not None:
            self.skip_at[{"top": 0, "bottom": depth - 1}[no_skip_at]] = None

        def block(i, o):
            return double_conv_reference(i, o, bias, relu_first)
        self.down = nn.ModuleList([block(in_channels if k == 0 else c[k - 1], c[k]) for k in range(depth)])
        self.bottleneck = block(c[depth - 1], c[depth])
        self.up = nn.ModuleList([nn.ConvTranspose2d(c[k + 1], c[k], 2, stride=2) for k in range(depth)])
        self.dec = nn.ModuleList([block(2 * c[k] if self.skip_at[k] == "cat" else c[k], c[k]) for k in range(depth)])
        self.head = nn.Conv2d(c[0], num_classes, 1)

    def middle(self, x):
        return self.bottleneck(x)

    def forward(self, x):
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
            x = F.max_pool2d(x, 2) if self.pool == "max" else F.avg_pool2d(x, 2)
        x = self.middle(x)
        for k in reversed(range(self.depth)):
            x = self.up[k](x)
            if self.skip_at[k] == "add":
                x = skips[k] + x
            elif self.skip_at[k] == "cat":
                x = torch.cat([skips[k], x] if self.cat_order == "skip_first" else [x, skips[k]], dim=1)
            x = self.dec[k](x)
        x = self.head(x)
        if self.head_act == "softmax":
            return F.softmax(x, dim=1)
        if self.head_act == "relu":
            return F.relu(x)
        return x


class AttentionUNetReference(UNetReference):
    """The U-Net with self-attention over the bottleneck's h·w tokens (section 4), with the catalogue's switches."""

    def __init__(self, in_channels, num_classes, base_channels=16, depth=3, num_heads=2, residual=True,
                 norm_place="pre", positions=True, tokens="permute", batch_first=True):
        super().__init__(in_channels, num_classes, base_channels, depth)
        dim = base_channels * 2 ** depth
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=batch_first)
        self.residual, self.norm_place, self.positions, self.tokens = residual, norm_place, positions, tokens
        self.batch_first = batch_first

    def middle(self, x):
        x = self.bottleneck(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2) if self.tokens == "permute" else x.reshape(b, h * w, c)
        if self.positions:
            t = t + sinusoidal_positions(h * w, c, x.dtype)
        u = self.norm(t) if self.norm_place == "pre" else t
        a = self.attn(u, u, u, need_weights=False)[0]
        t = (t + a) if self.residual else a
        if self.norm_place == "post":
            t = self.norm(t)
        return t.transpose(1, 2).reshape(b, c, h, w) if self.tokens == "permute" else t.reshape(b, c, h, w)


# --------------------------------------------------------------------------- the blocks and their trace


def block_names(depth: int, attention: bool) -> list[str]:
    """The blocks of section 2's table in forward order (state_dict prefixes)."""
    names = [f"down.{k}" for k in range(depth)] + ["bottleneck"] + (["norm", "attn"] if attention else [])
    for k in reversed(range(depth)):
        names += [f"up.{k}", f"dec.{k}"]
    return names + ["head"]


def block_label(name: str) -> str:
    """'dec[1] (decoder, 1/2 resolution)'."""
    part, _, k = name.partition(".")
    if not k:
        return {"bottleneck": "bottleneck", "norm": "norm (the bottleneck's LayerNorm)",
                "attn": "attn (the bottleneck's attention)", "head": "head (the 1×1 segmentation head)"}[part]
    scale = "full resolution" if k == "0" else f"1/{2 ** int(k)} resolution"
    kind = {"down": "encoder", "up": "up-sampling", "dec": "decoder"}[part]
    return f"{part}[{k}] ({kind}, {scale})"


RETURNED = "returned"   # the last entry of a trace: what forward returns


def block_shapes(config: dict, batch: int, height: int, width: int, attention: bool) -> dict[str, tuple]:
    """The output shape of every block (section 2's table), then of the returned logits."""
    depth, base = config["depth"], config["base_channels"]
    shapes = {}
    for name in block_names(depth, attention):
        part, _, k = name.partition(".")
        if part in ("down", "up", "dec"):
            s = 2 ** int(k)
            shapes[name] = (batch, base * s, height // s, width // s)
        elif part == "bottleneck":
            s = 2 ** depth
            shapes[name] = (batch, base * s, height // s, width // s)
        elif part in ("norm", "attn"):
            s = 2 ** depth
            shapes[name] = (batch, (height // s) * (width // s), base * s)
        else:
            shapes[name] = (batch, config["num_classes"], height, width)
    shapes[RETURNED] = (batch, config["num_classes"], height, width)
    return shapes


def _describe_block_error(exc: Exception, entered: list[str], names: list[str]) -> None:
    """Add to an error raised inside forward which block ran last (the student's traceback is kept)."""
    following = next((n for n in names if n not in entered), "")
    if not entered:
        where = f" [raised before {block_label(names[0])} ran]"
    else:
        where = f" [raised after {block_label(entered[-1])} ran" + \
            (f", before {block_label(following)}]" if following else "]")
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (exc.args[0] + where, *exc.args[1:])


def trace(module: nn.Module, x: torch.Tensor, config: dict, attention: bool, student: bool) -> np.ndarray:
    """Every block's output in forward order, then the returned value, flattened into one float64 list."""
    names = block_names(config["depth"], attention)
    records: dict[str, list] = {n: [] for n in names}
    entered: list[str] = []

    def hook(name):
        def record(mod, args, out):
            out = out[0] if isinstance(out, tuple) else out
            records[name].append(out.detach().clone())
            entered.append(name)
        return record

    handles = []
    for name in names:
        try:
            handles.append(module.get_submodule(name).register_forward_hook(hook(name)))
        except AttributeError:
            for h in handles:
                h.remove()
            raise RuleBroken(ONCE_RULE, f"your module has no block {block_label(name)}") from None
    try:
        out = module(x)
    except Exception as exc:
        if student:
            _describe_block_error(exc, entered, names)
        raise
    finally:
        for h in handles:
            h.remove()
    out = returned_array(out)
    if not student:
        return np.concatenate([*(records[n][0].numpy().ravel() for n in names), out.ravel()])
    if not isinstance(out, np.ndarray):
        return out
    expected = block_shapes(config, *x.shape[:1], *x.shape[2:], attention)
    for name in names:
        if len(records[name]) != 1:
            raise RuleBroken(ONCE_RULE, f"{block_label(name)} ran {len(records[name])} times in one forward")
    for name in names:
        if tuple(records[name][0].shape) != expected[name]:
            raise RuleBroken(SHAPE_RULE, f"{block_label(name)} gave an output of shape "
                                         f"{tuple(records[name][0].shape)}; the table gives {expected[name]}")
    if out.shape != expected[RETURNED]:
        raise RuleBroken(SHAPE_RULE, f"forward returned shape {out.shape}; the table gives {expected[RETURNED]} "
                                     "(batch, num_classes, H, W)")
    return np.concatenate([*(np.asarray(records[n][0].numpy(), dtype=np.float64).ravel() for n in names),
                           out.ravel()])


def _traces(module: nn.Module, inputs: dict, attention: bool, student: bool) -> np.ndarray:
    """The case's trace(s): eval mode; or, for a "train" case, one train-mode forward, then one in eval mode."""
    x = torch.from_numpy(np.array(inputs["x"]))
    config = inputs["config"]
    if inputs["mode"] != "train":
        module.eval()
        with torch.no_grad():
            return trace(module, x, config, attention, student)
    module.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(inputs["seed"])
        train = trace(module, x, config, attention, student)
    module.eval()
    with torch.no_grad():
        after = trace(module, x, config, attention, student)
    return np.stack([train, after])


# --------------------------------------------------------------------------- running the student and the reference


def _run_student(cls, inputs: dict, reference_name: str, attention: bool):
    module = build_student(cls, inputs["config"], double=True)
    if not isinstance(module, nn.Module):
        return module
    if inputs["kind"] == "reject":
        x = torch.from_numpy(np.array(inputs["x"]))
        module.eval()
        try:
            with torch.no_grad():
                out = module(x)
        except ValueError:
            return np.array([1.0])
        except Exception as exc:
            raise RuleBroken(SIZE_RULE, f"a {x.shape[2]}×{x.shape[3]} input with depth={inputs['config']['depth']} "
                                        f"raised {type(exc).__name__} ({exc}), not a ValueError") from None
        shape = tuple(getattr(out, "shape", ()))
        raise RuleBroken(SIZE_RULE, f"a {x.shape[2]}×{x.shape[3]} input with depth={inputs['config']['depth']} "
                                    f"ran without a ValueError" + (f" and returned shape {shape}" if shape else ""))
    _load(module, inputs["state"], reference_name)
    x = torch.from_numpy(np.array(inputs["x"]))
    with kept_unchanged({"x": x}, rule=INPUT_RULE):
        return _traces(module, inputs, attention, student=True)


def _run_reference(build: Callable[[], nn.Module], inputs: dict, attention: bool) -> np.ndarray:
    if inputs["kind"] == "reject":
        return np.array([1.0])
    module = on_meta(build)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if shapes != {k: np.shape(v) for k, v in inputs["state"].items()}:
        raise VariantDoesNotApply("this variant has other parameters than the case's state_dict")
    module = module.double().to_empty(device="cpu")
    module.load_state_dict(state_tensors(inputs["state"]), strict=True)
    return _traces(module, inputs, attention, student=False)


# --------------------------------------------------------------------------- cases


def _config_text(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _regions_and_index(config: dict, shape: tuple, attention: bool):
    """Named regions of a trace (each block's output to the end, forward order) and how to name an element."""
    shapes = block_shapes(config, shape[0], shape[2], shape[3], attention)
    names = list(shapes)
    sizes = [math.prod(shapes[n]) for n in names]
    starts = np.cumsum([0, *sizes])
    total = int(starts[-1])
    regions = {}
    for i, name in enumerate(names[1:], start=1):
        mask = np.zeros(total, dtype=bool)
        mask[starts[i]:] = True
        label = "the value forward returns (after head)" if name == RETURNED else \
            f"the blocks from {block_label(name)} on"
        regions[label] = mask

    def describe(index: tuple) -> str:
        prefix = ""
        if len(index) == 2:
            prefix, index = f"{('train-mode', 'eval-mode')[index[0]]} ", index[1:]
        flat = int(index[0])
        i = int(np.searchsorted(starts, flat, side="right")) - 1
        where = np.unravel_index(flat - starts[i], shapes[names[i]])
        what = "returned logits" if names[i] == RETURNED else f"output of {block_label(names[i])}"
        return f"{prefix}{what}[{', '.join(map(str, where))}]"
    return regions, describe


def output_case(name: str, build: Callable[..., nn.Module], number: int, config: dict, shape: tuple, salt: str,
                mode: str, attention: bool) -> Case:
    rng = case_rng(name, number, salt)
    state = random_state(lambda: build(**config), rng)
    x = rng.normal(size=shape)
    inputs = {"kind": "output", "config": config, "state": state, "x": x, "mode": mode,
              "seed": int(rng.integers(2 ** 31))}
    regions, describe = _regions_and_index(config, shape, attention)
    size = "×".join(map(str, shape))
    text = f"{name}({_config_text(config)}) with the check's weights, input {size}; compared: every block's " \
           "output in forward order, then the returned logits"
    if mode == "train":
        return Case(text + "; one forward in train mode, then one in eval mode", inputs, describe,
                    layout=Layout(axes=("value",), parts=TRAIN_PARTS), regions=regions)
    return Case(text + "; eval mode", inputs, describe, layout=Layout(axes=("value",)), regions=regions)


def count_case(name: str, config: dict) -> Case:
    return Case(f"number of parameters of {name}({_config_text(config)})", {"kind": "count", "config": config},
                lambda index: "the parameter count")


def reject_case(name: str, config: dict, shape: tuple) -> Case:
    return Case(f"{name}({_config_text(config)}) on a {shape[2]}×{shape[3]} input, not a multiple of "
                f"2**depth = {2 ** config['depth']}: forward must raise a ValueError",
                {"kind": "reject", "config": config, "x": np.zeros(shape)}, lambda index: "whether it raised")


def unet_cases(name: str, build, counts, outputs, rejects, hidden_counts, hidden_outputs, hidden_rejects,
               hidden: bool, attention: bool) -> list[Case]:
    """Parameter counts, then outputs ``(config, shape, mode)``, then inputs of a size the network must reject."""
    cases = [count_case(name, config) for config, _ in visible_then_hidden(counts, hidden_counts, hidden)]
    settings = visible_then_hidden(outputs, hidden_outputs, hidden)
    cases += [output_case(name, build, number, config, shape, salt, mode, attention)
              for number, ((config, shape, mode), salt) in enumerate(settings, start=1)]
    cases += [reject_case(name, config, shape)
              for (config, shape), _ in visible_then_hidden(rejects, hidden_rejects, hidden)]
    return cases


# --------------------------------------------------------------------------- the exercise


def unet_exercise(function: str, reference_name: str, build: Callable[..., nn.Module],
                  make_cases: Callable[[bool], list[Case]], mistakes: list[tuple], hint: str, section: str,
                  covers: dict, attention: bool) -> Exercise:
    """A U-Net exercise; ``mistakes`` are (name, hint, variant keywords for ``build``)."""

    def output_of(variant: dict):
        def compute(inputs):
            if inputs["kind"] == "count":
                return parameter_count(on_meta(lambda: build(**inputs["config"], **variant)))
            if inputs["kind"] == "reject" and variant:
                raise VariantDoesNotApply("a catalogued mistake does not change what an input size does")
            return _run_reference(lambda: build(**inputs["config"], **variant), inputs, attention)
        return compute

    def call(cls, inputs):
        if inputs["kind"] == "count":
            module = build_student(cls, inputs["config"])
            return parameter_count(module) if isinstance(module, nn.Module) else module
        return _run_student(cls, inputs, reference_name, attention)

    return Exercise(
        function=function, reference_name=reference_name, make_cases=make_cases, reference=output_of({}), call=call,
        mistakes=[Mistake(name, mhint, output_of(variant)) for name, mhint, variant in mistakes],
        tolerance=FLOAT64_MODULE, hint=hint, section=section, covers=covers,
        exception_hints={
            "ParameterMismatch": "use the attribute names and layer order of section 2's table: the check loads "
                                 "its weights into your module by name; the names it lists tell you the scale.",
            "RuntimeError": "the end of the error message says which block ran last: print the shapes of the "
                            "up-sampled tensor and of the skip you join to it at that scale.",
        })


def kind(case: Case) -> str:
    return case.inputs.get("kind", "")


def input_shape(case: Case) -> tuple:
    return tuple(np.shape(case.inputs["x"])) if "x" in case.inputs else ()


def config_value(case: Case, key: str):
    return case.inputs["config"].get(key)


UNET_COVERS: dict[str, Callable[[Case], bool]] = {
    "a parameter count": lambda c: kind(c) == "count",
    "eval mode (running statistics)": lambda c: kind(c) == "output",
    "train mode on a batch of 2 or more, then eval mode":
        lambda c: kind(c) == "output" and c.inputs["mode"] == "train" and input_shape(c)[0] >= 2,
    "a batch of 3 or more": lambda c: kind(c) == "output" and input_shape(c)[0] >= 3,
    "a non-square input": lambda c: kind(c) == "output" and input_shape(c)[2] != input_shape(c)[3],
    "depth 1": lambda c: kind(c) == "output" and config_value(c, "depth") == 1,
    "depth 3 or more": lambda c: kind(c) == "output" and config_value(c, "depth") >= 3,
    "one input channel": lambda c: kind(c) == "output" and config_value(c, "in_channels") == 1,
    "several input channels": lambda c: kind(c) == "output" and config_value(c, "in_channels") > 1,
    "an input size the network must reject": lambda c: kind(c) == "reject",
    "a size divisible by 2 but not by 2**depth":
        lambda c: kind(c) == "reject" and any(n % 2 == 0 for n in input_shape(c)[2:]),
}
