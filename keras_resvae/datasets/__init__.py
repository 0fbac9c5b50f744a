"""Datasets as arrays and `tf.data` pipelines."""

from keras_resvae.datasets.digits import load_digits

__all__ = ["load_digits"]
