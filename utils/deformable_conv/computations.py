"""The computations the deformable-convolution exercises share, done two ways.

* the references: ``torchvision.ops.deform_conv2d`` in float64, and bilinear sampling through it;
  torch is imported when a reference is first computed, never at module level (this notebook is
  graded in a kernel that cannot import torch or torchvision);
* NumPy re-implementations whose keyword switches reproduce the mistakes students make: every
  catalogued mistake of these exercises is one of them, told to compute wrongly.

With its switches off, each NumPy version is a complete answer to its exercise. So this module is
the course's reference, not part of what the grading kernel runs: the exercise modules import it
only inside the functions that compute references and mistakes (in the grader, or in a visible
check), never at module level or in ``Exercise.call``, and ``nbgrader_config.py`` makes it
unimportable in the kernel that grades this notebook (``c.SandboxedExecute.from_scratch``).

Layouts are torchvision's: ``a_l`` (N, C_in, H, W), ``delta`` (N, 2·K_h·K_w, H_out, W_out) holding Δy at
channel 2k and Δx at 2k+1 for tap k = kh·K_w + kw, ``mask`` (N, K_h·K_w, H_out, W_out),
``weight`` (C_out, C_in, K_h, K_w).
"""
from __future__ import annotations

import numpy as np

from utils.checks.adapters import float64_tensor, torch_module

# --------------------------------------------------------------------------- references


def torchvision_deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1) -> np.ndarray:
    """``torchvision.ops.deform_conv2d`` in float64 on numpy inputs, ``bias=None``: (N, C_out, H_out, W_out)."""
    torch = torch_module()
    from torchvision.ops import deform_conv2d

    with torch.no_grad():
        out = deform_conv2d(float64_tensor(a_l), float64_tensor(delta), float64_tensor(weight), bias=None,
                            stride=stride, padding=padding, dilation=dilation, mask=float64_tensor(mask))
    return out.numpy()


def torchvision_bilinear(a_l, points) -> np.ndarray:
    """Bilinear samples (P,) of ``a_l`` (H, W) at ``points`` (P, 2) of (q_y, q_x), via torchvision.

    A 1×1 deformable convolution with weight 1 samples its input at (0 + Δy, 0 + Δx).
    """
    a_l = np.asarray(a_l, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    images = np.broadcast_to(a_l, (n, 1) + a_l.shape)
    H, W = a_l.shape
    offsets = np.zeros((n, 2, H, W))
    offsets[:, :, 0, 0] = points   # output pixel (0, 0) samples at (0 + q_y, 0 + q_x)
    out = torchvision_deform_conv2d(images, offsets, np.ones((n, 1, H, W)), np.ones((1, 1, 1, 1)))
    return out[:, 0, 0, 0]


# --------------------------------------------------------------------------- NumPy, with mistake switches

def bilinear_numpy(images: np.ndarray, q_y: np.ndarray, q_x: np.ndarray, rule: str = "correct") -> np.ndarray:
    """Bilinear samples of ``images`` (C, H, W) at positions ``q_y``, ``q_x`` (any equal shapes).

    Returns (C, *q_y.shape). ``rule="correct"`` is torchvision's rule (each corner outside
    the image counts as zero); the other rules are the keys of
    :data:`utils.deformable_conv.bilinear_interpolate.SAMPLING_MISTAKES`.
    """
    images = np.asarray(images, dtype=np.float64)
    q_y = np.asarray(q_y, dtype=np.float64)
    q_x = np.asarray(q_x, dtype=np.float64)
    if rule == "swap_yx":
        q_y, q_x, rule = q_x, q_y, "correct"
    H, W = images.shape[-2:]

    if rule == "trunc":
        y0, x0 = np.trunc(q_y).astype(int), np.trunc(q_x).astype(int)
    else:
        y0, x0 = np.floor(q_y).astype(int), np.floor(q_x).astype(int)
    if rule == "ceil":
        y1, x1 = np.ceil(q_y).astype(int), np.ceil(q_x).astype(int)
    else:
        y1, x1 = y0 + 1, x0 + 1
    dy, dx = q_y - y0, q_x - x0

    def pixel(y, x):
        if rule == "clamp":
            return images[:, np.clip(y, 0, H - 1), np.clip(x, 0, W - 1)]
        if rule == "wrap":  # Python's negative indices read the other side of the image
            inside = (y >= -H) & (y < H) & (x >= -W) & (x < W)
            return images[:, y % H, x % W] * inside
        inside = (y >= 0) & (y < H) & (x >= 0) & (x < W)
        return images[:, np.clip(y, 0, H - 1), np.clip(x, 0, W - 1)] * inside

    v00, v01, v10, v11 = pixel(y0, x0), pixel(y0, x1), pixel(y1, x0), pixel(y1, x1)
    if rule == "ceil":  # sum of G(p, q) over floor/ceil corners: duplicates at integer positions
        wy0, wy1 = 1 - np.abs(y0 - q_y), 1 - np.abs(y1 - q_y)
        wx0, wx1 = 1 - np.abs(x0 - q_x), 1 - np.abs(x1 - q_x)
        return v00 * wy0 * wx0 + v01 * wy0 * wx1 + v10 * wy1 * wx0 + v11 * wy1 * wx1
    if rule == "corner_mix":  # "interpolate Y first" done with the wrong corners
        v_y = v00 * (1 - dy) + v10 * dy
        return v_y * (1 - dx) + v01 * dx
    if rule == "corner_mix_diagonal":  # x-weights applied to the vertical neighbours
        v0 = v00 * (1 - dx) + v10 * dx
        v1 = v01 * (1 - dx) + v11 * dx
        return v0 * (1 - dy) + v1 * dy
    out = (v00 * (1 - dx) + v01 * dx) * (1 - dy) + (v10 * (1 - dx) + v11 * dx) * dy
    if rule == "bounds_on_q":  # whole sample dropped unless q itself lies inside the image
        inside = (q_y >= 0) & (q_y <= H - 1) & (q_x >= 0) & (q_x <= W - 1)
        out = out * inside
    return out


def output_size(size, kernel_size, stride, padding, dilation, plus_one=True):
    """The convolution's output length; ``plus_one=False`` is the mistake of dropping the ``+ 1``."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + int(plus_one)


def output_size_with(size, k, s, p, d, plus_one=True, dilation=True, padding_twice=True, true_div=False):
    """The output length computed with the mistakes of conv_output_size switched on: no ``+ 1``, no
    dilation, padding on one side only, true division."""
    d = d if dilation else 1
    pad = 2 * p if padding_twice else p
    span = size + pad - d * (k - 1) - 1
    return (span / s if true_div else span // s) + int(plus_one)


def positions_numpy(delta, kernel_size, stride=1, padding=0, dilation=1, *, offsets="yx",
                    use_stride=True, use_padding=True, use_dilation=True) -> np.ndarray:
    """Sampling positions (2, N, K, H_out, W_out): p = h_out·stride − padding + kh·dilation + Δ.

    ``offsets`` says which channels hold tap k's (Δy, Δx): "yx" (2k, 2k+1, correct), "xy" (2k+1, 2k)
    or "k" (k, k+1); ``use_*=False`` leaves that setting out.
    """
    delta = np.asarray(delta, dtype=np.float64)
    K_h, K_w = kernel_size
    K = K_h * K_w
    _, _, H_out, W_out = delta.shape
    k = np.arange(K)
    if offsets == "yx":
        d_y, d_x = delta[:, 2 * k], delta[:, 2 * k + 1]
    elif offsets == "xy":
        d_y, d_x = delta[:, 2 * k + 1], delta[:, 2 * k]
    elif offsets == "k":
        d_y, d_x = delta[:, k], delta[:, k + 1]
    else:
        raise ValueError(f"offsets must be 'yx', 'xy' or 'k', got {offsets!r}")
    s = stride if use_stride else 1
    p = padding if use_padding else 0
    d = dilation if use_dilation else 1
    kh, kw = k // K_w, k % K_w
    base_y = (np.arange(H_out) * s - p)[None, None, :, None] + (kh * d)[None, :, None, None]
    base_x = (np.arange(W_out) * s - p)[None, None, None, :] + (kw * d)[None, :, None, None]
    return np.stack([base_y + d_y, base_x + d_x])


def deform_conv2d_numpy(a_l, delta, mask, weight, stride=1, padding=0, dilation=1, *, rule="correct",
                        offsets="yx", use_mask=True, use_stride=True, use_padding=True,
                        use_dilation=True, plus_one=True) -> np.ndarray:
    """Vectorized deformable convolution (N, C_out, H_out, W_out); the keyword switches reproduce known mistakes
    (``rule`` as in :func:`bilinear_numpy`, ``offsets`` and ``use_*`` as in :func:`positions_numpy`)."""
    a_l, weight, mask = (np.asarray(x, dtype=np.float64) for x in (a_l, weight, mask))
    N, C_in, H, W = a_l.shape
    C_out, _, K_h, K_w = weight.shape
    H_out = output_size(H, K_h, stride, padding, dilation, plus_one)
    W_out = output_size(W, K_w, stride, padding, dilation, plus_one)
    delta = np.asarray(delta, dtype=np.float64)[:, :, :H_out, :W_out]
    mask = mask[:, :, :H_out, :W_out]
    p_y, p_x = positions_numpy(delta, (K_h, K_w), stride, padding, dilation, offsets=offsets,
                               use_stride=use_stride, use_padding=use_padding, use_dilation=use_dilation)
    sampled = np.stack([bilinear_numpy(a_l[n], p_y[n], p_x[n], rule) for n in range(N)])
    if use_mask:
        sampled = sampled * mask[:, None]
    return np.einsum("oik,nikhw->nohw", weight.reshape(C_out, C_in, K_h * K_w), sampled)
