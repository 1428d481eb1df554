"""ganops: reproducible, tracked DCGAN training, evaluation and tuning."""

__version__ = "0.1.0"
