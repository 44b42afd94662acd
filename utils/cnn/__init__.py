"""Checks for the CNN assignment: one subpackage per notebook.

* :mod:`utils.cnn.layers` — ``cnn_layers.ipynb``: layers from scratch in NumPy (torch is blocked
  in that notebook's grading kernel, so this subpackage imports torch only to compute references);
* :mod:`utils.cnn.pipeline` — ``cnn_pipeline.ipynb``: data, a small CNN, training and evaluation;
* :mod:`utils.cnn.architectures` — ``cnn_architectures.ipynb``: LeNet, VGG, ResNet, SE blocks.
* :mod:`utils.cnn.efficient` — ``cnn_efficient.ipynb``: depthwise-separable and inverted residual blocks,
  MAC counts against FlopCounterMode, the costs of receptive fields.
* :mod:`utils.cnn.training` — ``cnn_training.ipynb``: confusion matrix and per-class metrics, gradient
  clipping, early stopping with a checkpoint, an optimizer for fine-tuning.
* :mod:`utils.cnn.segmentation` — ``cnn_segmentation.ipynb``: a U-Net, its shapes and parameter counts,
  and a hybrid with self-attention at the bottleneck.

This ``__init__`` imports none of them: a notebook's kernel loads only its own checks.
"""
