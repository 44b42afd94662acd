"""NumPy versions of the layers, with switches that reproduce the mistakes students make.

With its switches off, each function here is a complete answer to an exercise of the cnn_layers
notebook (batch norm forward and backward, max and average pooling backward, the numerical
gradient). So this module is the course's reference, not part of what the grading kernel runs: the
exercise modules import it only inside the functions that compute known mistakes (in the grader, or
in a visible check), never at module level or in ``Exercise.call``, and ``nbgrader_config.py``
makes it unimportable in the kernel that grades this notebook (``c.SandboxedExecute.from_scratch``).
"""
from __future__ import annotations

import numpy as np

from utils.cnn.layers.shared import flatten

# --------------------------------------------------------------------------- batch normalization


def _channel_axes(x) -> tuple[int, ...]:
    """Every axis but the channel axis 1: (0,) or (0, 2, 3)."""
    return (0,) + tuple(range(2, np.ndim(x)))


def _per_channel(values, x) -> np.ndarray:
    """A per-channel vector (C,) shaped to broadcast against x: (1, C) or (1, C, 1, 1)."""
    return np.reshape(values, (1, -1) + (1,) * (np.ndim(x) - 2))


def batchnorm_numpy(x, gamma, beta, running_mean, running_var, momentum, eps, training, *, ddof=0,
                    reversed_momentum=False, biased_running=False, batch_stats_in_eval=False,
                    update_in_eval=False, eps_outside=False) -> np.ndarray:
    """Batch norm in numpy, flattened like the reference; the keyword flags reproduce the named mistakes."""
    x = np.asarray(x, dtype=np.float64)
    axes = _channel_axes(x)
    mean, var = x.mean(axis=axes), x.var(axis=axes, ddof=ddof)
    m = x.size // mean.size
    unbiased = x.var(axis=axes) * m / (m - 1)
    batch_var_for_running = x.var(axis=axes) if biased_running else unbiased
    if training or update_in_eval:
        keep, take = (momentum, 1 - momentum) if reversed_momentum else (1 - momentum, momentum)
        new_rm = keep * running_mean + take * mean
        new_rv = keep * running_var + take * batch_var_for_running
    else:
        new_rm, new_rv = np.array(running_mean, dtype=np.float64), np.array(running_var, dtype=np.float64)
    if not training and not batch_stats_in_eval:
        mean, var = np.asarray(running_mean), np.asarray(running_var)
    shape_mean, shape_var = _per_channel(mean, x), _per_channel(var, x)
    denom = np.sqrt(shape_var) + eps if eps_outside else np.sqrt(shape_var + eps)
    out = _per_channel(gamma, x) * (x - shape_mean) / denom + _per_channel(beta, x)
    return flatten(out, new_rm, new_rv)


def batchnorm_backward_numpy(dout, x, gamma, eps, *, ddof=0, constant_stats=False,
                             dgamma_from_x=False) -> np.ndarray:
    """The compact batch-norm backward formula in numpy, done wrongly as the flags say."""
    axes = _channel_axes(x)
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True, ddof=ddof) + eps)
    x_hat = (x - mean) * inv_std
    dx_hat = dout * _per_channel(gamma, x)
    if constant_stats:
        dx = dx_hat * inv_std
    else:
        dx = inv_std * (dx_hat - dx_hat.mean(axis=axes, keepdims=True)
                        - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True))
    dgamma = (dout * (x if dgamma_from_x else x_hat)).sum(axis=axes)
    return flatten(dx, dgamma, dout.sum(axis=axes))


# --------------------------------------------------------------------------- pooling


def pool_backward_loops(x, dout, kernel_size: int, step: int, mode: str = "max", assign: bool = False) -> np.ndarray:
    """Pooling backward by loops, windows ``step`` apart (clipped at the border like numpy slices).

    mode "max": dout to the argmax; "avg": dout / k² to every position; "all": dout to every position.
    ``assign=True`` writes with = instead of +=, so overlapping windows overwrite each other.
    """
    k = kernel_size
    dx = np.zeros_like(x, dtype=np.float64)
    N, C, H_out, W_out = dout.shape
    for n in range(N):
        for c in range(C):
            for a in range(H_out):
                for b in range(W_out):
                    rows, cols = slice(a * step, a * step + k), slice(b * step, b * step + k)
                    window = x[n, c, rows, cols]
                    if mode == "max":
                        r, q = np.unravel_index(np.argmax(window), window.shape)
                        if assign:
                            dx[n, c, a * step + r, b * step + q] = dout[n, c, a, b]
                        else:
                            dx[n, c, a * step + r, b * step + q] += dout[n, c, a, b]
                    else:
                        dx[n, c, rows, cols] += dout[n, c, a, b] / (k * k if mode == "avg" else 1)
    return dx


# --------------------------------------------------------------------------- numerical gradient


def finite_differences(f, x, h, rule: str = "centred") -> np.ndarray:
    """Finite differences in row-major order, flattened with x after them; ``rule`` gives the named mistakes:
    "forward" (f(x + h) − f(x)) / h, "one_h" centred but divided by h, "no_restore" x not put back."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        f_plus = f(x)
        if rule == "forward":
            x[idx] = old
            grad[idx] = (f_plus - f(x)) / h
            continue
        x[idx] = old - h
        f_minus = f(x)
        if rule != "no_restore":
            x[idx] = old
        grad[idx] = (f_plus - f_minus) / (h if rule == "one_h" else 2 * h)
    return flatten(grad, x)
