"""Which module defines each check, so that ``utils`` imports an assignment's module
(and torch) only when one of its checks is used; and which notebook calls those checks."""
from __future__ import annotations

import ast
import importlib
from typing import NamedTuple


class CheckModule(NamedTuple):
    notebook: str                 # the notebook its checks are called from: source/<notebook>.ipynb
    exercises: tuple[str, ...]    # ``check_<name>`` for each name, in the module's EXERCISES order


CHECK_MODULES: dict[str, CheckModule] = {
    "utils.deformable_conv": CheckModule("deformable_conv/deformable_conv", (
        "conv_output_size", "bilinear_interpolate", "sampling_positions", "deform_conv2d")),
    "utils.cnn.layers": CheckModule("cnn/cnn_layers", (
        "conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward",
        "avgpool2d_backward", "global_avg_pool_forward", "global_avg_pool_backward", "relu_forward",
        "relu_backward", "linear_forward", "linear_backward", "batchnorm_forward", "batchnorm_backward",
        "softmax_cross_entropy", "numerical_gradient", "size_answers", "param_answers", "rf_answers",
        "hand_answers", "network_backward", "numpy_train_steps")),
    "utils.cnn.pipeline": CheckModule("cnn/cnn_pipeline", (
        "build_transforms", "split_train_val", "CustomCNN", "CustomCNNwithBN", "make_criterion_and_optimizer",
        "topk_accuracy", "train_one_epoch", "evaluate")),
    "utils.cnn.architectures": CheckModule("cnn/cnn_architectures", (
        "LeNet5", "VGGBlock", "BasicBlock", "AlexNet", "SEBlock", "SEResNet18", "CNNClassifier",
        "block_gradient_norms")),
    "utils.cnn.efficient": CheckModule("cnn/cnn_efficient", (
        "DepthwiseSeparableConv", "InvertedResidual", "count_macs", "efficiency_answers")),
    "utils.cnn.segmentation": CheckModule("cnn/cnn_segmentation", (
        "UNet", "unet_answers", "BottleneckAttentionUNet")),
    "utils.cnn.training": CheckModule("cnn/cnn_training", (
        "confusion_matrix", "classification_metrics", "clip_gradients", "EarlyStopping", "fine_tune_optimizer")),
    "utils.rnn": CheckModule("rnn/rnn", (
        "build_vocab", "make_sequences", "init_rnn_params", "rnn_forward", "rnn_loss", "rnn_gradients",
        "perplexity", "lstm_cell", "lstm_forward", "LSTMModel", "gradient_norms")),
    "utils.rnn.batches": CheckModule("rnn/rnn_batches", (
        "pad_batch", "packed_last_hidden", "bidirectional_lstm", "Seq2Seq")),
    "utils.attention": CheckModule("attention/attention", (
        "scaled_dot_product_attention", "multi_head_attention", "positional_encoding", "transformer_encoder_block",
        "mha_param_count", "attention_matrix_bytes", "kv_cache_bytes")),
    "utils.vit": CheckModule("vit/vit", (
        "patchify", "patch_embed_linear", "patch_embed_conv", "embed_tokens", "ViT", "vit_param_count",
        "attention_weights")),
}

MODULE_OF_CHECK = {f"check_{name}": module for module, entry in CHECK_MODULES.items() for name in entry.exercises}


def check_function(check_name: str):
    module = MODULE_OF_CHECK.get(check_name)
    if module is None:
        raise AttributeError(f"utils has no check named {check_name!r}")
    return getattr(importlib.import_module(module), check_name)


def exercise(check_name: str):
    """The :class:`~utils.checks.exercise.Exercise` behind ``check_<name>``."""
    module = MODULE_OF_CHECK.get(check_name)
    if module is None:
        raise KeyError(f"no exercise is registered for {check_name!r}")
    return importlib.import_module(module).EXERCISES[check_name[len("check_"):]]


def checks_in(source: str) -> list[tuple[str, str]]:
    """``(check name, argument source)`` for each top-level ``check_<name>(<arg>, ...)`` call."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in MODULE_OF_CHECK and node.args):
            found.append((node.func.id, ast.unparse(node.args[0])))
    unique = []
    for item in found:   # the visible and the hidden call check the same object once
        if item not in unique:
            unique.append(item)
    return unique
