"""Typical mistakes in the deformable-convolution assignment, as sample submissions."""
from . import SampleMistake

MISTAKES = [
    SampleMistake(
        student="deform_offsets_swapped", notebook="deformable_conv", cell="deform_conv2d",
        replace=(("delta_y = delta[n, 2 * k, h_out, w_out]", "delta_y = delta[n, 2 * k + 1, h_out, w_out]"),
                 ("delta_x = delta[n, 2 * k + 1, h_out, w_out]", "delta_x = delta[n, 2 * k, h_out, w_out]")),
        diagnosis="Δy and Δx swapped"),
    SampleMistake(
        student="deform_mask_ignored", notebook="deformable_conv", cell="deform_conv2d",
        replace=(("weight[c_out, c_in, kh, kw] * m_k * sample", "weight[c_out, c_in, kh, kw] * sample"),),
        diagnosis="the modulation mask is ignored"),
    SampleMistake(
        student="deform_no_dilation", notebook="deformable_conv", cell="deform_conv2d",
        replace=(("h_start + kh * dilation + delta_y", "h_start + kh + delta_y"),
                 ("w_start + kw * dilation + delta_x", "w_start + kw + delta_x")),
        diagnosis="dilation is ignored"),
    SampleMistake(
        student="deform_int_truncation", notebook="deformable_conv", cell="bilinear_interpolate",
        replace=(("y0 = int(np.floor(q_y))", "y0 = int(q_y)"), ("x0 = int(np.floor(q_x))", "x0 = int(q_x)")),
        diagnosis="`int()` is used instead of floor"),
    SampleMistake(
        student="deform_size_missing_plus_one", notebook="deformable_conv", cell="conv_output_size",
        replace=(("// stride + 1", "// stride"),),
        diagnosis="the `+ 1` at the end of the formula is missing"),
]
