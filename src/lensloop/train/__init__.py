"""Training: settings, trainers, the release and registry, tracking, evaluation, inference.

Import the modules directly: :mod:`~lensloop.train.trainer` (``train_model``, any
method), :mod:`~lensloop.train.probe` and :mod:`~lensloop.train.finetune` (the two
methods), :mod:`~lensloop.train.release` and :mod:`~lensloop.train.registry` (versions and
aliases), :mod:`~lensloop.train.tracking` (MLflow), :mod:`~lensloop.train.evaluate` and
:mod:`~lensloop.train.inference`. scikit-learn, ONNX Runtime, torch, Lightning and MLflow
load only in the modules that use them.
"""
