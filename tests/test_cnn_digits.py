"""The notebook's own pipeline (source/cnn/cnn_pipeline.ipynb) must learn: its small CNN reaches at least
95 % test accuracy on scikit-learn's digits (the offline stand-in for CIFAR-100) within a minute of CPU time.

The test executes the notebook's code cells that define the data, the solution functions and the experiment
(instructor solutions included, without the check cells, figures and grid search), then calls its
``run_experiment`` on one thread with a fixed seed (its ``torch.manual_seed(seed)``), all inside
``torch.random.fork_rng`` so that the global generator is left as it was.
"""
from __future__ import annotations

import time
from pathlib import Path

import nbformat
import numpy as np
import torch

from utils.instructor.course import solution_code

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "cnn" / "cnn_pipeline.ipynb"
CELLS = ["imports", "build_transforms", "split_train_val", "load_data", "CustomCNN", "CustomCNNwithBN",
         "make_criterion_and_optimizer", "topk_accuracy", "train_one_epoch", "evaluate", "experiment_definitions"]


def notebook_namespace() -> dict:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = {c.metadata["nbgrader"]["grade_id"]: solution_code(c.source)
            for c in nb.cells if c.cell_type == "code"}
    namespace: dict = {}
    for name in CELLS:
        exec(compile(code[name], f"<cnn_pipeline.ipynb:{name}>", "exec"), namespace)
    return namespace


def test_small_cnn_learns_the_digits(capsys):
    threads = torch.get_num_threads()
    torch_state = torch.get_rng_state()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):   # the data cell draws one augmented sample
            namespace = notebook_namespace()
            assert namespace["USE_REAL_CIFAR100"] is False, "the notebook must default to the offline stand-in"
            start = time.process_time()
            model, history, test = namespace["run_experiment"](epochs=8, seed=0, device=torch.device("cpu"))
            cpu = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert type(model).__name__ == "SmallCNN"
    with capsys.disabled():
        print(f"\n[cnn_pipeline digits] test top-1 {test['top1']:.2%}, top-3 {test['top3']:.2%}, "
              f"final validation {history['val_acc'][-1]:.2%}, {cpu:.1f} s CPU for {len(history['val_acc'])} epochs")
    assert np.all(np.isfinite(history["train_loss"]))
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert test["top1"] >= 0.95, f"test accuracy {test['top1']:.2%} < 95 %"
    assert cpu < 60, f"training took {cpu:.1f} s of CPU time (limit 60 s)"
