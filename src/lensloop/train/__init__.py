"""Training: settings, heads, the model registry, and evaluation of released models.

Import the modules directly (:mod:`lensloop.train.probe`, :mod:`lensloop.train.registry`,
:mod:`lensloop.train.config`); scikit-learn, ONNX and ONNX Runtime load when first used.
"""
