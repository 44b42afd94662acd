"""Checks for ``cnn_training.ipynb``: evaluation beyond accuracy, and the craft of training and fine-tuning.

The notebook asks for, in this order (one module per exercise):

* :mod:`~utils.cnn.training.confusion` — ``confusion_matrix(y_true, y_pred, num_classes)`` (rows = true class);
* :mod:`~utils.cnn.training.metrics` — ``classification_metrics(y_true, y_pred, num_classes)``: per-class
  precision, recall, F1 and support, accuracy, balanced accuracy, macro-F1;
* :mod:`~utils.cnn.training.clipping` — ``clip_gradients(parameters, max_norm)``: global L2-norm clipping in
  place, with an explosion guard;
* :mod:`~utils.cnn.training.early_stopping` — the class ``EarlyStopping(patience, min_delta, path)`` with
  ``step(val_loss, model)`` and ``restore(model)`` and a ``torch.save`` checkpoint;
* :mod:`~utils.cnn.training.fine_tuning` — ``fine_tune_optimizer(model, head_lr, backbone_lr, weight_decay)``:
  a frozen backbone or its own learning rate, AdamW without weight decay on 1-d parameters.

Every reference is real library code run when the check runs: scikit-learn's metrics
(``confusion_matrix(..., labels=range(C))``, ``precision_recall_fscore_support(..., zero_division=0)``,
``balanced_accuracy_score``), ``torch.nn.utils.clip_grad_norm_``, ``torch.save``/``torch.load``,
``torch.optim.AdamW``; models and gradients in float64, on one CPU thread. Each known mistake is the same
harness run on a deliberately wrong reference.
"""
from utils.cnn.training.clipping import CLIP, check_clip_gradients
from utils.cnn.training.confusion import CONFUSION, check_confusion_matrix
from utils.cnn.training.early_stopping import EARLY_STOPPING, check_EarlyStopping
from utils.cnn.training.fine_tuning import FINE_TUNE, check_fine_tune_optimizer
from utils.cnn.training.metrics import METRICS, check_classification_metrics

EXERCISES = {e.function: e for e in (CONFUSION, METRICS, CLIP, EARLY_STOPPING, FINE_TUNE)}

__all__ = ["EXERCISES", "check_confusion_matrix", "check_classification_metrics", "check_clip_gradients",
           "check_EarlyStopping", "check_fine_tune_optimizer"]
