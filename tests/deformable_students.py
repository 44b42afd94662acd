"""Student implementations of the deformable-convolution exercises, for ``test_deformable_checks.py``.

``CORRECT`` holds correct alternatives written the ways students write them (the seed's nested loops,
vectorised NumPy, float32 arithmetic, torch tensors, 0-d arrays, tuples or lists); ``REALISTIC``
holds realistic wrong implementations, each with the words its diagnosis must contain.
"""
import math

import numpy as np
import torch

# =============================================================================================
# Correct student implementations
# =============================================================================================

# ---------------------------------------------------------------- conv_output_size

def conv_output_size_seed(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def conv_output_size_counting(size, kernel_size, stride=1, padding=0, dilation=1):
    """Slide the window over the padded input and count where it fits."""
    span = dilation * (kernel_size - 1) + 1
    count, start = 0, 0
    while start + span <= size + 2 * padding:
        count += 1
        start += stride
    return count


def conv_output_size_floor(size, kernel_size, stride=1, padding=0, dilation=1):
    return math.floor((size + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1


def conv_output_size_numpy_int(size, kernel_size, stride=1, padding=0, dilation=1):
    return np.int64(size + 2 * padding - dilation * (kernel_size - 1) - 1) // np.int64(stride) + np.int64(1)


def conv_output_size_float32(size, kernel_size, stride=1, padding=0, dilation=1):
    span = np.float32(size + 2 * padding - dilation * (kernel_size - 1) - 1)
    return np.floor(span / np.float32(stride)) + np.float32(1)


# ---------------------------------------------------------------- bilinear_interpolate

def bilinear_seed(a_l, q_y, q_x):
    H, W = a_l.shape
    y0 = int(np.floor(q_y))
    x0 = int(np.floor(q_x))
    y1 = y0 + 1
    x1 = x0 + 1

    def px(y, x):
        return a_l[y, x] if 0 <= y < H and 0 <= x < W else 0.0

    dy = q_y - y0
    dx = q_x - x0
    v0 = px(y0, x0) * (1 - dx) + px(y0, x1) * dx
    v1 = px(y1, x0) * (1 - dx) + px(y1, x1) * dx
    return v0 * (1 - dy) + v1 * dy


def bilinear_vectorized(a_l, q_y, q_x):
    """All four corners at once; returns np.float64."""
    H, W = a_l.shape
    y0, x0 = np.floor(q_y), np.floor(q_x)
    ys = np.array([y0, y0, y0 + 1, y0 + 1]).astype(int)
    xs = np.array([x0, x0 + 1, x0, x0 + 1]).astype(int)
    weights = (1 - np.abs(q_y - ys)) * (1 - np.abs(q_x - xs))
    inside = (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
    values = a_l[np.clip(ys, 0, H - 1), np.clip(xs, 0, W - 1)] * inside
    return np.sum(weights * values)


def bilinear_g_kernel(a_l, q_y, q_x):
    """The paper's G(p, q) = max(0, 1−|q_y−p_y|)·max(0, 1−|q_x−p_x|) summed over floor/floor+1."""
    H, W = a_l.shape
    total = 0.0
    for p_y in (math.floor(q_y), math.floor(q_y) + 1):
        for p_x in (math.floor(q_x), math.floor(q_x) + 1):
            if 0 <= p_y < H and 0 <= p_x < W:
                total += max(0.0, 1 - abs(q_y - p_y)) * max(0.0, 1 - abs(q_x - p_x)) * a_l[p_y, p_x]
    return total


def bilinear_float32(a_l, q_y, q_x):
    a_l = np.asarray(a_l, dtype=np.float32)
    q_y, q_x = np.float32(q_y), np.float32(q_x)
    H, W = a_l.shape
    y0, x0 = int(np.floor(q_y)), int(np.floor(q_x))
    dy, dx = q_y - np.float32(y0), q_x - np.float32(x0)

    def px(y, x):
        return a_l[y, x] if 0 <= y < H and 0 <= x < W else np.float32(0)

    top = px(y0, x0) * (1 - dx) + px(y0, x0 + 1) * dx
    bottom = px(y0 + 1, x0) * (1 - dx) + px(y0 + 1, x0 + 1) * dx
    result = top * (1 - dy) + bottom * dy
    assert result.dtype == np.float32
    return result


def bilinear_zero_d_array(a_l, q_y, q_x):
    return np.array(bilinear_seed(a_l, q_y, q_x))


def bilinear_one_element_array(a_l, q_y, q_x):
    return np.array([bilinear_seed(a_l, q_y, q_x)])


def bilinear_grid_sample(a_l, q_y, q_x):
    """torch's grid_sample (zero padding, align_corners=True): right, but not from scratch."""
    H, W = a_l.shape
    image = torch.as_tensor(a_l, dtype=torch.float64)[None, None]
    grid = torch.tensor([[[[2 * q_x / (W - 1) - 1, 2 * q_y / (H - 1) - 1]]]], dtype=torch.float64)
    out = torch.nn.functional.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0, 0, 0, 0]


# ---------------------------------------------------------------- sampling_positions

def positions_seed(delta, kernel_size, stride=1, padding=0, dilation=1):
    N, _, H_out, W_out = delta.shape
    K_h, K_w = kernel_size
    p_y = np.zeros((N, K_h * K_w, H_out, W_out))
    p_x = np.zeros_like(p_y)
    for n in range(N):
        for kh in range(K_h):
            for kw in range(K_w):
                k = kh * K_w + kw
                for h in range(H_out):
                    for w in range(W_out):
                        p_y[n, k, h, w] = h * stride - padding + kh * dilation + delta[n, 2 * k, h, w]
                        p_x[n, k, h, w] = w * stride - padding + kw * dilation + delta[n, 2 * k + 1, h, w]
    return p_y, p_x


def positions_vectorized(delta, kernel_size, stride, padding, dilation):
    K_h, K_w = kernel_size
    H_out, W_out = delta.shape[2:]
    kh, kw = np.divmod(np.arange(K_h * K_w), K_w)
    base_y = np.arange(H_out)[None, :, None] * stride - padding + kh[:, None, None] * dilation
    base_x = np.arange(W_out)[None, None, :] * stride - padding + kw[:, None, None] * dilation
    return base_y.astype(delta.dtype) + delta[:, 0::2], base_x.astype(delta.dtype) + delta[:, 1::2]


def positions_vectorized_list(delta, kernel_size, stride=1, padding=0, dilation=1):
    p_y, p_x = positions_vectorized(delta, kernel_size, stride, padding, dilation)
    return [p_y, p_x]


def positions_float32(delta, kernel_size, stride=1, padding=0, dilation=1):
    p_y, p_x = positions_vectorized(np.asarray(delta, dtype=np.float32), kernel_size, stride, padding, dilation)
    assert p_y.dtype == p_x.dtype == np.float32
    return p_y, p_x


def positions_torch(delta, kernel_size, stride=1, padding=0, dilation=1):
    p_y, p_x = positions_vectorized(delta, kernel_size, stride, padding, dilation)
    return torch.from_numpy(p_y), torch.from_numpy(p_x)


# ---------------------------------------------------------------- deform_conv2d

def deform_seed(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    """The notebook's seed style: nested loops, its own bilinear_interpolate, a float32 output."""
    N, C_in, H, W = a_l.shape
    C_out, _, K_h, K_w = weight.shape
    H_out = conv_output_size_seed(H, K_h, stride, padding, dilation)
    W_out = conv_output_size_seed(W, K_w, stride, padding, dilation)
    out = np.zeros((N, C_out, H_out, W_out), dtype=np.float32)
    for n in range(N):
        for c_out in range(C_out):
            for h_out in range(H_out):
                for w_out in range(W_out):
                    h_start = h_out * stride - padding
                    w_start = w_out * stride - padding
                    value = 0.0
                    for kh in range(K_h):
                        for kw in range(K_w):
                            k = kh * K_w + kw
                            dy = delta[n, 2 * k, h_out, w_out]
                            dx = delta[n, 2 * k + 1, h_out, w_out]
                            m = mask[n, k, h_out, w_out]
                            sy = h_start + kh * dilation + dy
                            sx = w_start + kw * dilation + dx
                            for c_in in range(C_in):
                                value += weight[c_out, c_in, kh, kw] * m * bilinear_seed(a_l[n, c_in], sy, sx)
                    out[n, c_out, h_out, w_out] = value
    return out


def deform_from(conv_output_size, sampling_positions, bilinear_interpolate, use_mask=True):
    """A student's deform_conv2d built from their own earlier functions (as the notebook suggests)."""
    def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
        N, C_in, H, W = a_l.shape
        C_out, _, K_h, K_w = weight.shape
        H_out = conv_output_size(H, K_h, stride, padding, dilation)
        W_out = conv_output_size(W, K_w, stride, padding, dilation)
        p_y, p_x = sampling_positions(delta[:, :, :H_out, :W_out], (K_h, K_w), stride, padding, dilation)
        out = np.zeros((N, C_out, H_out, W_out))
        for n in range(N):
            for h in range(H_out):
                for w in range(W_out):
                    for k in range(K_h * K_w):
                        m = mask[n, k, h, w] if use_mask else 1.0
                        for c_in in range(C_in):
                            sample = bilinear_interpolate(a_l[n, c_in], p_y[n, k, h, w], p_x[n, k, h, w])
                            out[n, :, h, w] += weight[:, c_in, k // K_w, k % K_w] * m * sample
        return out
    return deform_conv2d


deform_from_parts = deform_from(conv_output_size_seed, positions_seed, bilinear_seed)


def deform_vectorized(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    """Gather the four corners of every sample at once; computes in the dtype of a_l."""
    N, C_in, H, W = a_l.shape
    C_out, _, K_h, K_w = weight.shape
    p_y, p_x = positions_vectorized(delta, (K_h, K_w), stride, padding, dilation)   # (N, K, H_out, W_out)
    y0, x0 = np.floor(p_y), np.floor(p_x)
    sampled = np.zeros((N, C_in) + p_y.shape[1:], dtype=a_l.dtype)
    n_index = np.arange(N)[:, None, None, None]
    for cy in (0, 1):
        for cx in (0, 1):
            yy, xx = (y0 + cy).astype(int), (x0 + cx).astype(int)
            g = (1 - np.abs(p_y - yy)) * (1 - np.abs(p_x - xx))
            inside = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            values = a_l[n_index, :, np.clip(yy, 0, H - 1), np.clip(xx, 0, W - 1)]   # (N, K, H_out, W_out, C_in)
            sampled += np.moveaxis(values, -1, 1) * (g * inside * mask)[:, None]
    return np.einsum("oik,nikhw->nohw", weight.reshape(C_out, C_in, K_h * K_w), sampled)


def deform_float32(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    a_l, delta, mask, weight = (np.asarray(x, dtype=np.float32) for x in (a_l, delta, mask, weight))
    out = deform_vectorized(a_l, delta, mask, weight, stride, padding, dilation)
    assert out.dtype == np.float32
    return out


def deform_torch(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    """A torch implementation in float32; returns a tensor that requires grad."""
    x = torch.as_tensor(a_l, dtype=torch.float32)
    off = torch.as_tensor(delta, dtype=torch.float32)
    m = torch.as_tensor(mask, dtype=torch.float32)
    w = torch.as_tensor(weight, dtype=torch.float32).clone().requires_grad_(True)
    N, C_in, H, W = x.shape
    C_out, _, K_h, K_w = w.shape
    K = K_h * K_w
    H_out, W_out = off.shape[2:]
    k = torch.arange(K)
    kh, kw = k // K_w, k % K_w
    p_y = ((torch.arange(H_out) * stride - padding)[None, None, :, None] + (kh * dilation)[None, :, None, None]
           + off[:, 0::2])
    p_x = ((torch.arange(W_out) * stride - padding)[None, None, None, :] + (kw * dilation)[None, :, None, None]
           + off[:, 1::2])
    y0, x0 = torch.floor(p_y), torch.floor(p_x)
    flat = x.reshape(N, C_in, H * W)
    sampled = torch.zeros(N, C_in, K, H_out, W_out)
    for cy in (0, 1):
        for cx in (0, 1):
            yy, xx = y0 + cy, x0 + cx
            g = (1 - (p_y - yy).abs()) * (1 - (p_x - xx).abs())
            inside = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            index = (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1)).long().reshape(N, 1, -1).expand(N, C_in, -1)
            values = torch.gather(flat, 2, index).reshape(N, C_in, K, H_out, W_out)
            sampled = sampled + values * (g * inside * m)[:, None]
    out = torch.einsum("oik,nikhw->nohw", w.reshape(C_out, C_in, K), sampled)
    assert out.requires_grad and out.dtype == torch.float32
    return out


CORRECT = {
    "conv_output_size": [conv_output_size_seed, conv_output_size_counting, conv_output_size_floor,
                         conv_output_size_numpy_int, conv_output_size_float32],
    "bilinear_interpolate": [bilinear_seed, bilinear_vectorized, bilinear_g_kernel, bilinear_float32,
                             bilinear_zero_d_array, bilinear_one_element_array],
    "sampling_positions": [positions_seed, positions_vectorized_list, positions_float32, positions_torch],
    "deform_conv2d": [deform_seed, deform_from_parts, deform_vectorized, deform_float32, deform_torch],
}


# =============================================================================================
# Realistic wrong implementations
# =============================================================================================

# ---------------------------------------------------------------- conv_output_size

def size_no_plus_one(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride


def size_no_dilation(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - kernel_size) // stride + 1


def size_padding_once(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + padding - dilation * (kernel_size - 1) - 1) // stride + 1


def size_true_division(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) / stride + 1


# ---------------------------------------------------------------- bilinear_interpolate

def bilinear_clamp(a_l, q_y, q_x):
    H, W = a_l.shape
    y0, x0 = int(np.floor(q_y)), int(np.floor(q_x))
    dy, dx = q_y - y0, q_x - x0

    def px(y, x):   # "stay inside the image"
        return a_l[min(max(y, 0), H - 1), min(max(x, 0), W - 1)]

    v0 = px(y0, x0) * (1 - dx) + px(y0, x0 + 1) * dx
    v1 = px(y0 + 1, x0) * (1 - dx) + px(y0 + 1, x0 + 1) * dx
    return v0 * (1 - dy) + v1 * dy


def bilinear_int(a_l, q_y, q_x):
    H, W = a_l.shape
    y0, x0 = int(q_y), int(q_x)          # rounds towards zero
    dy, dx = q_y - y0, q_x - x0

    def px(y, x):
        return a_l[y, x] if 0 <= y < H and 0 <= x < W else 0.0

    v0 = px(y0, x0) * (1 - dx) + px(y0, x0 + 1) * dx
    v1 = px(y0 + 1, x0) * (1 - dx) + px(y0 + 1, x0 + 1) * dx
    return v0 * (1 - dy) + v1 * dy


def bilinear_wrap(a_l, q_y, q_x):
    H, W = a_l.shape
    y0, x0 = int(np.floor(q_y)), int(np.floor(q_x))
    dy, dx = q_y - y0, q_x - x0

    def px(y, x):
        return a_l[y, x] if y < H and x < W else 0.0   # forgot y >= 0 and x >= 0

    v0 = px(y0, x0) * (1 - dx) + px(y0, x0 + 1) * dx
    v1 = px(y0 + 1, x0) * (1 - dx) + px(y0 + 1, x0 + 1) * dx
    return v0 * (1 - dy) + v1 * dy


def bilinear_bounds_on_q(a_l, q_y, q_x):
    H, W = a_l.shape
    if not (0 <= q_y <= H - 1 and 0 <= q_x <= W - 1):
        return 0.0
    y0, x0 = int(np.floor(q_y)), int(np.floor(q_x))
    y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
    dy, dx = q_y - y0, q_x - x0
    v0 = a_l[y0, x0] * (1 - dx) + a_l[y0, x1] * dx
    v1 = a_l[y1, x0] * (1 - dx) + a_l[y1, x1] * dx
    return v0 * (1 - dy) + v1 * dy


def bilinear_corner_mix(a_l, q_y, q_x):
    H, W = a_l.shape
    y0, x0 = int(np.floor(q_y)), int(np.floor(q_x))
    dy, dx = q_y - y0, q_x - x0

    def px(y, x):
        return a_l[y, x] if 0 <= y < H and 0 <= x < W else 0.0

    v00, v01, v10 = px(y0, x0), px(y0, x0 + 1), px(y0 + 1, x0)
    v_y = v00 * (1 - dy) + v10 * dy     # interpolate Y first ...
    return v_y * (1 - dx) + v01 * dx    # ... then X, with the wrong corner


def bilinear_diagonal(a_l, q_y, q_x):
    H, W = a_l.shape
    y0, x0 = int(np.floor(q_y)), int(np.floor(q_x))
    dy, dx = q_y - y0, q_x - x0

    def px(y, x):
        return a_l[y, x] if 0 <= y < H and 0 <= x < W else 0.0

    v0 = px(y0, x0) * (1 - dx) + px(y0 + 1, x0) * dx     # "v01" taken as the pixel below
    v1 = px(y0, x0 + 1) * (1 - dx) + px(y0 + 1, x0 + 1) * dx
    return v0 * (1 - dy) + v1 * dy


def bilinear_ceil(a_l, q_y, q_x):
    H, W = a_l.shape
    total = 0.0
    for p_y in (math.floor(q_y), math.ceil(q_y)):
        for p_x in (math.floor(q_x), math.ceil(q_x)):
            if 0 <= p_y < H and 0 <= p_x < W:
                total += max(0.0, 1 - abs(q_y - p_y)) * max(0.0, 1 - abs(q_x - p_x)) * a_l[p_y, p_x]
    return total


def bilinear_swapped_arguments(a_l, q_x, q_y):   # the signature's order mixed up
    return bilinear_seed(a_l, q_y, q_x)


# ---------------------------------------------------------------- sampling_positions

def positions_swap_yx(delta, kernel_size, stride=1, padding=0, dilation=1):
    N, _, H_out, W_out = delta.shape
    K_h, K_w = kernel_size
    p_y = np.zeros((N, K_h * K_w, H_out, W_out))
    p_x = np.zeros_like(p_y)
    for n in range(N):
        for kh in range(K_h):
            for kw in range(K_w):
                k = kh * K_w + kw
                for h in range(H_out):
                    for w in range(W_out):
                        p_x[n, k, h, w] = w * stride - padding + kw * dilation + delta[n, 2 * k, h, w]
                        p_y[n, k, h, w] = h * stride - padding + kh * dilation + delta[n, 2 * k + 1, h, w]
    return p_y, p_x


def positions_k_not_2k(delta, kernel_size, stride=1, padding=0, dilation=1):
    N, _, H_out, W_out = delta.shape
    K_h, K_w = kernel_size
    p_y = np.zeros((N, K_h * K_w, H_out, W_out))
    p_x = np.zeros_like(p_y)
    for n in range(N):
        for kh in range(K_h):
            for kw in range(K_w):
                k = kh * K_w + kw
                for h in range(H_out):
                    for w in range(W_out):
                        p_y[n, k, h, w] = h * stride - padding + kh * dilation + delta[n, k, h, w]
                        p_x[n, k, h, w] = w * stride - padding + kw * dilation + delta[n, k + 1, h, w]
    return p_y, p_x


def positions_no_stride(delta, kernel_size, stride=1, padding=0, dilation=1):
    K_h, K_w = kernel_size
    H_out, W_out = delta.shape[2:]
    kh, kw = np.divmod(np.arange(K_h * K_w), K_w)
    p_y = np.arange(H_out)[None, :, None] - padding + kh[:, None, None] * dilation + delta[:, 0::2]
    p_x = np.arange(W_out)[None, None, :] - padding + kw[:, None, None] * dilation + delta[:, 1::2]
    return p_y, p_x


def positions_no_padding(delta, kernel_size, stride=1, padding=0, dilation=1):
    K_h, K_w = kernel_size
    H_out, W_out = delta.shape[2:]
    kh, kw = np.divmod(np.arange(K_h * K_w), K_w)
    p_y = np.arange(H_out)[None, :, None] * stride + kh[:, None, None] * dilation + delta[:, 0::2]
    p_x = np.arange(W_out)[None, None, :] * stride + kw[:, None, None] * dilation + delta[:, 1::2]
    return p_y, p_x


def positions_no_dilation(delta, kernel_size, stride=1, padding=0, dilation=1):
    K_h, K_w = kernel_size
    H_out, W_out = delta.shape[2:]
    kh, kw = np.divmod(np.arange(K_h * K_w), K_w)
    p_y = np.arange(H_out)[None, :, None] * stride - padding + kh[:, None, None] + delta[:, 0::2]
    p_x = np.arange(W_out)[None, None, :] * stride - padding + kw[:, None, None] + delta[:, 1::2]
    return p_y, p_x


# ---------------------------------------------------------------- deform_conv2d

def deform_with(conv_output_size=conv_output_size_seed, sampling_positions=positions_seed,
                 bilinear_interpolate=bilinear_seed, use_mask=True, name="deform_conv2d"):
    """The seed-style parts composed by ``deform_from``, one of them wrong."""
    fn = deform_from(conv_output_size, sampling_positions, bilinear_interpolate, use_mask)
    fn.__name__ = name
    return fn


deform_swap_yx = deform_with(sampling_positions=positions_swap_yx, name="deform_swap_yx")   # Δx from 2k, Δy 2k+1
deform_mask_ignored = deform_with(use_mask=False, name="deform_mask_ignored")               # without m_k


# (check, student, distinctive substring of the Mistake.name the check must report)
REALISTIC = [
    ("conv_output_size", size_no_plus_one, "`+ 1` at the end of the formula is missing"),
    ("conv_output_size", size_no_dilation, "ignore dilation"),
    ("conv_output_size", size_padding_once, "padding is added once"),
    ("conv_output_size", size_true_division, "true division"),
    ("bilinear_interpolate", bilinear_clamp, "clamped to the border"),
    ("bilinear_interpolate", bilinear_int, "`int()` is used instead of floor"),
    ("bilinear_interpolate", bilinear_wrap, "negative indices wrap around"),
    ("bilinear_interpolate", bilinear_bounds_on_q, "q itself is outside"),
    ("bilinear_interpolate", bilinear_corner_mix, "mixed up when interpolating Y first"),
    ("bilinear_interpolate", bilinear_diagonal, "x-fraction is applied to the vertical neighbours"),
    ("bilinear_interpolate", bilinear_ceil, "counted twice"),
    ("bilinear_interpolate", bilinear_swapped_arguments, "q_y and q_x are swapped"),
    ("sampling_positions", positions_swap_yx, "Δy and Δx swapped"),
    ("sampling_positions", positions_k_not_2k, "channels k and k+1"),
    ("sampling_positions", positions_no_stride, "stride is ignored"),
    ("sampling_positions", positions_no_padding, "padding is ignored"),
    ("sampling_positions", positions_no_dilation, "dilation is ignored"),
    ("deform_conv2d", deform_swap_yx, "Δy and Δx swapped"),
    ("deform_conv2d", deform_with(sampling_positions=positions_k_not_2k), "channels k and k+1"),
    ("deform_conv2d", deform_with(sampling_positions=positions_no_stride), "stride is ignored"),
    ("deform_conv2d", deform_with(sampling_positions=positions_no_padding), "padding is ignored"),
    ("deform_conv2d", deform_with(sampling_positions=positions_no_dilation), "dilation is ignored"),
    ("deform_conv2d", deform_with(bilinear_interpolate=bilinear_clamp), "clamped to the border"),
    ("deform_conv2d", deform_with(bilinear_interpolate=bilinear_int), "`int()` is used instead of floor"),
    ("deform_conv2d", deform_with(bilinear_interpolate=bilinear_wrap), "negative indices wrap around"),
    ("deform_conv2d", deform_with(bilinear_interpolate=bilinear_bounds_on_q), "q itself is outside"),
    ("deform_conv2d", deform_with(bilinear_interpolate=bilinear_corner_mix), "mixed up when interpolating Y first"),
    ("deform_conv2d", deform_with(bilinear_interpolate=bilinear_diagonal),
     "x-fraction is applied to the vertical neighbours"),
    ("deform_conv2d", deform_with(bilinear_interpolate=bilinear_ceil), "counted twice"),
    ("deform_conv2d", deform_mask_ignored, "mask is ignored"),
    ("deform_conv2d", deform_with(conv_output_size=size_no_plus_one), "`+ 1` in the output size is missing"),
]
REALISTIC_IDS = [f"{check}-{getattr(fn, '__name__', 'fn')}-{sub[:24]}" for check, fn, sub in REALISTIC]

