"""Checks for the CNN assignment: one subpackage per notebook.

* :mod:`utils.cnn.layers` — ``cnn_layers.ipynb``: layers from scratch in NumPy (torch is blocked
  in that notebook's grading kernel, so this subpackage imports torch only to compute references);
* :mod:`utils.cnn.pipeline` — ``cnn_pipeline.ipynb``: data, a small CNN, training and evaluation;
* :mod:`utils.cnn.architectures` — ``cnn_architectures.ipynb``: LeNet, VGG, ResNet, SE blocks.

This ``__init__`` imports none of them: a notebook's kernel loads only its own checks.
"""
