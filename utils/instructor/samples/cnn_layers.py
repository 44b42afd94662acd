"""Typical mistakes in the notebook "CNN layers from scratch" (assignment cnn, notebook cnn_layers)."""
from . import SampleMistake

MISTAKES = [
    SampleMistake(student="cnn_conv_padding_kept", notebook="cnn_layers", cell="conv2d_backward",
                  replace=(("dx = dx_pad[:, :, padding:padding + H, padding:padding + W]", "dx = dx_pad"),),
                  diagnosis="padding not removed from dX"),
    SampleMistake(student="cnn_maxpool_all_positions", notebook="cnn_layers", cell="maxpool2d_backward",
                  replace=(("dx[n_idx, c_idx, i * stride + r, j * stride + q] += dout[:, :, i, j]",
                            "dx[:, :, i * stride:i * stride + k, j * stride:j * stride + k] "
                            "+= dout[:, :, i:i + 1, j:j + 1]"),),
                  diagnosis="pooling gradient sent to all positions of the window instead of only the argmax"),
    SampleMistake(student="cnn_bn_unbiased_var", notebook="cnn_layers", cell="batchnorm_forward",
                  replace=(("var = x.var(axis=axes)  ", "var = x.var(axis=axes, ddof=1)  "),
                           ("momentum * var * m / (m - 1)", "momentum * var")),
                  diagnosis="BN using unbiased variance"),
    SampleMistake(student="cnn_softmax_no_max", notebook="cnn_layers", cell="softmax_cross_entropy",
                  replace=(("shifted = logits - logits.max(axis=1, keepdims=True)", "shifted = logits"),),
                  diagnosis="softmax without subtracting the max"),
    SampleMistake(student="cnn_rf_pool_window_ignored", notebook="cnn_layers", cell="rf_answers",
                  replace=(('"rf_blocks": [4, 10, 22, 46],', '"rf_blocks": [3, 7, 15, 31],'),),
                  diagnosis="max-pool window was not counted"),
]
