"""Typical mistakes in the deformable-convolution assignment, as sample submissions."""
from . import in_notebook

mistake = in_notebook("deformable_conv")

MISTAKES = [
    mistake("deform_offsets_swapped", "deform_conv2d",
            ("delta_y = delta[n, 2 * k, h_out, w_out]", "delta_y = delta[n, 2 * k + 1, h_out, w_out]"),
            ("delta_x = delta[n, 2 * k + 1, h_out, w_out]", "delta_x = delta[n, 2 * k, h_out, w_out]"),
            diagnosis="Δy and Δx swapped"),
    mistake("deform_mask_ignored", "deform_conv2d",
            ("weight[c_out, c_in, kh, kw] * m_k * sample", "weight[c_out, c_in, kh, kw] * sample"),
            diagnosis="the modulation mask is ignored"),
    mistake("deform_no_dilation", "deform_conv2d",
            ("h_start + kh * dilation + delta_y", "h_start + kh + delta_y"),
            ("w_start + kw * dilation + delta_x", "w_start + kw + delta_x"),
            diagnosis="dilation is ignored"),
    mistake("deform_int_truncation", "bilinear_interpolate",
            ("y0 = int(np.floor(q_y))", "y0 = int(q_y)"),
            ("x0 = int(np.floor(q_x))", "x0 = int(q_x)"),
            diagnosis="`int()` is used instead of floor"),
    mistake("deform_size_missing_plus_one", "conv_output_size",
            ("// stride + 1", "// stride"),
            diagnosis="the `+ 1` at the end of the formula is missing"),
]
