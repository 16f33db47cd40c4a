"""Downstream fine-tuning and evaluation: semantic/instance segmentation, detection, metrics, label budgets.

Modules: :mod:`~mm3dkit.downstream.metrics`, :mod:`~mm3dkit.downstream.label_budget`,
:mod:`~mm3dkit.downstream.semseg`, :mod:`~mm3dkit.downstream.instance`, :mod:`~mm3dkit.downstream.detection`,
:mod:`~mm3dkit.downstream.datasets` and the entry point :mod:`~mm3dkit.downstream.finetune`.
"""
