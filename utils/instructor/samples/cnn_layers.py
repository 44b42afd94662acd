"""Typical mistakes in the notebook "CNN layers from scratch" (assignment cnn, notebook cnn_layers)."""
from . import in_notebook

mistake = in_notebook("cnn_layers")

MISTAKES = [
    mistake("cnn_conv_padding_kept", "conv2d_backward",
            ("dx = dx_pad[:, :, padding:padding + H, padding:padding + W]", "dx = dx_pad"),
            diagnosis="padding not removed from dX"),
    mistake("cnn_maxpool_all_positions", "maxpool2d_backward",
            ("dx[n_idx, c_idx, i * stride + r, j * stride + q] += dout[:, :, i, j]",
             "dx[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += dout[:, :, i:i + 1, j:j + 1]"),
            diagnosis="pooling gradient sent to all positions of the window instead of only the argmax"),
    mistake("cnn_bn_unbiased_var", "batchnorm_forward",
            ("var = x.var(axis=axes)  ", "var = x.var(axis=axes, ddof=1)  "),
            ("momentum * var * m / (m - 1)", "momentum * var"),
            diagnosis="BN using unbiased variance"),
    mistake("cnn_softmax_no_max", "softmax_cross_entropy",
            ("shifted = logits - logits.max(axis=1, keepdims=True)", "shifted = logits"),
            diagnosis="softmax without subtracting the max"),
    mistake("cnn_rf_pool_window_ignored", "rf_answers",
            ('"rf_blocks": [4, 10, 22, 46],', '"rf_blocks": [3, 7, 15, 31],'),
            diagnosis="max-pool window was not counted"),
    mistake("cnn_network_flatten_order", "network_backward",
            ("dp1 = dflat.reshape(p1.shape)",
             "dp1 = dflat.reshape(p1.shape[0], p1.shape[2], p1.shape[3], p1.shape[1]).transpose(0, 3, 1, 2)"),
            diagnosis="reshaped back in another order (channels last)"),
    mistake("cnn_train_gradient_ascent", "numpy_train_steps",
            ("params[name] - lr * grads[name]", "params[name] + lr * grads[name]"),
            diagnosis="the gradient was added to the parameters (gradient ascent)"),
]
