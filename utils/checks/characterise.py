"""What a difference looks like, for mistakes that are not in an exercise's catalogue.

When no known mistake matches, the feedback still says *where* the student's output differs (which part
of a multi-part result, which slice of which axis, which named region such as "masked positions") and
*what kind* of difference it is (a constant factor and its value, a sign, an offset, axes in another
order, a shift by one, a reversal, whole numbers where fractions are expected, zeros). When the parts of a
result differ in different ways, it says that more than one thing is wrong.

Axes are named by the exercise's :class:`Layout` ("batch", "time step", "unit"), so a sentence reads like
the notebook: "only c differs; h matches", "from time step 3 on", "only at masked positions".
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from utils.checks.compare import Tolerance


@dataclass(frozen=True)
class Layout:
    """How to name the axes of a compared output.

    ``axes``: one name per axis ("batch", "time step", "unit"); ``parts``: when axis 0 stacks several
    results (``(h, c)`` stacked), their names, and ``axes`` then names the axes of one part.
    """

    axes: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()

    def axis_names(self, ndim: int) -> list[str]:
        names = list(self.axes)
        return [names[i] if i < len(names) else f"axis {i}" for i in range(ndim)]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _number(x: float) -> str:
    return str(int(round(x))) if abs(x - round(x)) < 1e-9 and abs(x) < 1e15 else f"{x:.4g}"


def _factor_meaning(c: float, sizes: list[tuple[str, int]]) -> str:
    """' (= 1/√8)' when the factor is the length of an axis, its inverse, or their square roots; else ''."""
    candidates = []
    for name, n in sizes:
        if n > 1:
            candidates += [(n, f"{n}, the number of {name}s"), (1 / n, f"1/{n}")]
            if math.isqrt(n) ** 2 != n:   # √4 reads better as 2
                candidates += [(math.sqrt(n), f"√{n}"), (1 / math.sqrt(n), f"1/√{n}")]
    for value, text in candidates:
        if abs(c - value) <= 1e-3 * abs(value):
            return f" (= {text})"
    return ""


def _slices(bad: np.ndarray, names: list[str]) -> list[str]:
    """'from time step 3 on', 'only at batch 1', 'only the last batch': each axis along which the bad values
    are confined to part of its indices."""
    phrases = []
    for axis in range(bad.ndim):
        n = bad.shape[axis]
        if n < 2:
            continue
        others = tuple(a for a in range(bad.ndim) if a != axis)
        hit = np.flatnonzero(bad.any(axis=others)) if others else np.flatnonzero(bad)
        if len(hit) == 0 or len(hit) == n:
            continue
        name = names[axis]
        first, last = int(hit[0]), int(hit[-1])
        contiguous = last - first + 1 == len(hit)
        if len(hit) == 1:
            phrases.append(f"only the last {name} ({first})" if first == n - 1 and n > 2 else f"only at {name} {first}")
        elif contiguous and last == n - 1:
            phrases.append(f"from {name} {first} on")
        elif contiguous and first == 0:
            phrases.append(f"only up to {name} {last}")
        elif len(hit) <= 4:
            phrases.append(f"only at {name} {', '.join(map(str, hit))}")
        elif bad.ndim > 1:   # along a flat list, scattered indices say nothing the count of values does not
            phrases.append(f"at {len(hit)} of {n} {name} indices")
    return phrases


def _single_number(actual: float, expected: float, names: list[str]) -> str:
    """A factor only when it means something (2, 1/2, a size); otherwise how far off, in the answer's units."""
    if expected != 0 and actual != 0:
        c = actual / expected
        if abs(abs(c) - 0.5) < 1e-9 or (abs(c) >= 2 and abs(c - round(c)) < 1e-6):
            return f"yours = expected × {_number(c)}"
    gap = actual - expected
    if gap == round(gap) and expected == round(expected):
        return f"yours is {_number(abs(gap))} {'more' if gap > 0 else 'less'} than expected"
    if expected != 0:
        return f"yours is {abs(gap / expected):.2%} {'larger' if gap > 0 else 'smaller'} than expected"
    return ""


def _kind(actual: np.ndarray, expected: np.ndarray, tol: Tolerance, names: list[str],
          structural: bool = True) -> str:
    """What kind of difference ``actual`` has from ``expected`` (same shape), or ''. With ``structural=False``
    (several results joined into one list) axes swapped, shifts and reversals are not looked for: along such a
    list they mean nothing."""
    if actual.size == 0:
        return ""
    close = tol.close
    if np.any(expected != 0) and np.all(close(actual, -expected)):
        return "every value has the wrong sign (yours = −expected)" if actual.size > 1 else "the sign is wrong"
    if actual.size == 1:
        return _single_number(float(actual.reshape(())), float(expected.reshape(())), names)
    denominator = float(np.sum(expected * expected))
    if denominator > 0:
        c = float(np.sum(actual * expected)) / denominator
        if abs(c - 1) > 1e-6 and abs(c) > 1e-12 and np.all(close(actual, c * expected)):
            sizes = [(name, n) for name, n in zip(names, expected.shape, strict=False)]
            return f"yours = expected × {_number(c)}{_factor_meaning(abs(c), sizes)}: a constant factor"
    if np.all(actual == 0) and np.any(expected != 0):
        return "all your values are 0"
    offset = actual - expected
    if actual.size > 1 and np.all(close(actual, expected + float(np.median(offset)))):
        return f"yours = expected {float(np.median(offset)):+.4g}: a constant offset"
    if structural and 2 <= actual.ndim <= 5:
        for perm in itertools.permutations(range(actual.ndim)):
            if perm == tuple(range(actual.ndim)) or expected.transpose(perm).shape != actual.shape:
                continue
            if np.all(close(actual, expected.transpose(perm))):
                moved = [names[a] for a, p in enumerate(perm) if a != p]
                return f"yours is the expected result with the {_join(moved)} axes swapped"
    for axis in range(actual.ndim if structural else 0):
        n = actual.shape[axis]
        if n < 2:
            continue
        if n > 2 and np.all(close(np.flip(actual, axis), expected)):
            return f"yours is the expected result in reverse {names[axis]} order"
        for step in (1, -1):
            head = [slice(None)] * actual.ndim
            tail = [slice(None)] * actual.ndim
            head[axis] = slice(step, None) if step > 0 else slice(None, step)
            tail[axis] = slice(None, -step) if step > 0 else slice(-step, None)
            if n > 2 and np.all(close(actual[tuple(head)], expected[tuple(tail)])) and \
                    not np.all(close(actual[tuple(tail)], expected[tuple(tail)])):
                later = "the one before it" if step > 0 else "the one after it"
                return f"yours is shifted by one {names[axis]}: each {names[axis]} holds the expected value of {later}"
    if np.all(actual == np.round(actual)) and not np.all(expected == np.round(expected)):
        return "your values are whole numbers where the expected ones are not: something was rounded or cast to int"
    zero = (actual == 0) & ~close(np.zeros_like(expected), expected)
    bad = ~close(actual, expected)
    if zero.any() and np.all(zero == bad):
        return (f"every value that differs is 0 in yours ({int(zero.sum())} of {actual.size}): "
                "those were never filled in")
    return ""


def _where_and_kind(actual: np.ndarray, expected: np.ndarray, bad: np.ndarray, tol: Tolerance,
                    names: list[str]) -> tuple[str, list[str]]:
    """The kind of difference (over the whole result, else within the slice where the values differ) and
    where it is."""
    where = _slices(bad, names)
    kind = _kind(actual, expected, tol, names)
    if not kind and where and bad.ndim:
        index = tuple(np.unique(np.nonzero(bad)[a]) for a in range(bad.ndim))
        sub = np.ix_(*index)
        kind = _kind(actual[sub], expected[sub], tol, names)
    return kind, where


def describe_difference(actual: np.ndarray, expected: np.ndarray, tol: Tolerance, layout: Layout | None = None,
                        regions: dict[str, np.ndarray] | None = None) -> list[str]:
    """Sentences that localise and characterise how ``actual`` differs from ``expected`` (same shape)."""
    layout = layout or Layout()
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~tol.close(actual, expected)
    if not bad.any():
        return []
    broken = ~np.isfinite(actual) & np.isfinite(expected)
    if broken.any():   # NaN or inf: where they are says where the computation breaks down
        names = ["part", *layout.axis_names(actual.ndim - 1)] if layout.parts else layout.axis_names(actual.ndim)
        where = _slices(broken, names)
        share = f"{int(broken.sum())} of {actual.size}"
        if actual.ndim == 1 and regions:
            where = []
        return [f"NaN or infinite values ({share}){': ' + '; '.join(where) if where else ''}; "
                "the expected values there are finite.",
                *_regions(actual, expected, broken, tol, regions or {}, described=True)]
    lines = []
    parts = layout.parts if layout.parts and actual.ndim >= 1 and actual.shape[0] == len(layout.parts) else ()
    if parts:
        names = ["part", *layout.axis_names(actual.ndim - 1)]
        differing = [i for i in range(len(parts)) if bad[i].any()]
        matching = [parts[i] for i in range(len(parts)) if i not in differing]
        if matching:
            verb = "differs" if len(differing) == 1 else "differ"
            lines.append(f"Only {_join([parts[i] for i in differing])} {verb}; {_join(matching)} "
                         f"{'matches' if len(matching) == 1 else 'match'}.")
        kinds = {}
        for i in differing:
            kinds[parts[i]] = _where_and_kind(actual[i], expected[i], bad[i], tol, names[1:])
        described = {p: (k, w) for p, (k, w) in kinds.items() if k or w}
        distinct = {(k, tuple(w)) for k, w in described.values()}
        if len(differing) > 1 and len(distinct) > 1:
            lines.append("More than one thing is wrong: the parts differ in different ways.")
        for part, (kind, where) in described.items():
            text = "; ".join([*where, kind] if kind else where)
            lines.append(f"In {part}: {text}.")
    else:
        if actual.ndim == 1 and regions:   # results joined into one list: its regions say where
            kind, where = _kind(actual, expected, tol, ["value"], structural=False), []
        else:
            kind, where = _where_and_kind(actual, expected, bad, tol, layout.axis_names(actual.ndim))
        text = "; ".join([*where, kind] if kind else where)
        if text:
            lines.append(f"{text[0].upper()}{text[1:]}.")
    lines += _regions(actual, expected, bad, tol, regions or {}, described=bool(lines))
    return lines


def _regions(actual: np.ndarray, expected: np.ndarray, bad: np.ndarray, tol: Tolerance,
             regions: dict[str, np.ndarray], described: bool) -> list[str]:
    """'All the differences are in the weights of blocked keys; the rest matches: yours = expected × 2.', or
    which named regions match when the differences are spread over several."""
    masks = {}
    for name, mask in regions.items():
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), bad.shape)
        if mask.any() and (~mask).any():
            masks[name] = mask
    containing = [name for name, mask in masks.items() if not (bad & ~mask).any()]
    if containing:
        name = min(containing, key=lambda n: int(masks[n].sum()))
        kind = "" if described else _kind(actual[masks[name]], expected[masks[name]], tol, ["value"],
                                          structural=False)
        return [f"All the differences are in {name}; the rest matches{': ' + kind if kind else ''}."]
    matching = [name for name, mask in masks.items() if not (bad & mask).any()]
    return [f"Nothing differs in {_join(matching)}."] if matching else []


def describe_shape(actual_shape: tuple, expected_shape: tuple, layout: Layout | None = None,
                   actual: np.ndarray | None = None, expected: np.ndarray | None = None) -> list[str]:
    """Sentences about a shape mismatch: axes in another order, an axis of length 1 added or dropped, one
    axis off by one, and for a list of numbers which entry is missing or extra."""
    layout = layout or Layout()
    names = layout.axis_names(len(expected_shape)) if not layout.parts else \
        ["part", *layout.axis_names(len(expected_shape) - 1)]
    shown = ", ".join(names)
    if len(actual_shape) == len(expected_shape) and actual_shape != expected_shape and \
            sorted(actual_shape) == sorted(expected_shape):
        return [f"Your axes are in another order: expected ({shown})."]
    squeezed = tuple(n for n in actual_shape if n != 1)
    if squeezed == tuple(n for n in expected_shape if n != 1):
        more = len(actual_shape) > len(expected_shape)
        return [f"Yours has {'an extra' if more else 'a missing'} axis of length 1 (expected ({shown}))."]
    if len(actual_shape) == len(expected_shape):
        off = [a for a in range(len(expected_shape)) if actual_shape[a] != expected_shape[a]]
        if len(off) == 1:
            a = off[0]
            delta = actual_shape[a] - expected_shape[a]
            lines = [f"Along {names[a]}: yours has {actual_shape[a]}, expected {expected_shape[a]}"
                     + (f" ({'one too many' if delta == 1 else 'one too few'}: an off-by-one?)." if abs(delta) == 1
                        else ".")]
            if actual is not None and expected is not None and len(expected_shape) == 1 and abs(delta) == 1:
                lines += _missing_or_extra_entry(np.asarray(actual, dtype=np.float64),
                                                 np.asarray(expected, dtype=np.float64))
            return lines
    if math.prod(actual_shape) == math.prod(expected_shape):
        return [f"Same number of values, arranged differently: expected ({shown})."]
    return []


def _missing_or_extra_entry(actual: np.ndarray, expected: np.ndarray) -> list[str]:
    """'Entry 2 (expected 0.31) is missing; the others match.' for 1-D results one entry apart."""
    longer, shorter, missing = (expected, actual, True) if len(expected) > len(actual) else (actual, expected, False)
    tol = Tolerance(atol=1e-5, rtol=1e-4)
    for k in range(len(longer)):
        if np.all(tol.close(np.delete(longer, k), shorter)):
            if missing:
                return [f"Entry {k} (expected {_number(float(longer[k]))}) is missing; the others match."]
            return [f"Your entry {k} ({_number(float(longer[k]))}) is extra; the others match."]
    return []
