"""Checks for ``cnn_pipeline.ipynb``: a CIFAR-100 classifier in PyTorch, end to end.

The notebook asks for, in this order (one module per exercise or pair of exercises):

* :mod:`~utils.cnn.pipeline.data` — ``build_transforms()`` (augmentation and normalisation) and
  ``split_train_val(dataset, seed)`` (a seeded 80/20 ``random_split``);
* :mod:`~utils.cnn.pipeline.models` — the classes ``CustomCNN`` and ``CustomCNNwithBN``;
* :mod:`~utils.cnn.pipeline.criterion_optimizer` — ``make_criterion_and_optimizer(model)``;
* :mod:`~utils.cnn.pipeline.topk` — ``topk_accuracy(logits, targets, k)``;
* :mod:`~utils.cnn.pipeline.loops` — ``train_one_epoch(...)`` and ``evaluate(...)``.

:mod:`~utils.cnn.pipeline.shared` keeps torch's global state as it was while a check runs.

Every reference is real torch/torchvision code (a reference network, ``random_split``, ``torch.optim.SGD``,
``torch.topk``) run when the check runs, on one CPU thread; models run in float64. Anything random in the
student's code (module initialisation, dropout, an unseeded split) runs inside ``torch.random.fork_rng``
with a fixed local seed, so checks are deterministic and never move the global generators. Each known
mistake is the same harness run on a deliberately wrong reference. ``Exercise.call`` runs the student's
code and returns numbers only; references are computed from the case inputs, so the trusted grader can
run them outside the student's kernel.
"""
from utils.cnn.pipeline.criterion_optimizer import OPTIMIZER, check_make_criterion_and_optimizer
from utils.cnn.pipeline.data import SPLIT, TRANSFORMS, check_build_transforms, check_split_train_val
from utils.cnn.pipeline.loops import EVALUATE, TRAIN_EPOCH, check_evaluate, check_train_one_epoch
from utils.cnn.pipeline.models import CUSTOM_CNN, CUSTOM_CNN_BN, check_CustomCNN, check_CustomCNNwithBN
from utils.cnn.pipeline.topk import TOPK, check_topk_accuracy

EXERCISES = {e.function: e for e in (TRANSFORMS, SPLIT, CUSTOM_CNN, CUSTOM_CNN_BN, OPTIMIZER, TOPK,
                                     TRAIN_EPOCH, EVALUATE)}

__all__ = ["EXERCISES", "check_build_transforms", "check_split_train_val", "check_CustomCNN",
           "check_CustomCNNwithBN", "check_make_criterion_and_optimizer", "check_topk_accuracy",
           "check_train_one_epoch", "check_evaluate"]
