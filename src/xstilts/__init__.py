"""xstilts: English intermediate-task training for zero-shot cross-lingual transfer on XTREME."""

__version__ = "0.1.0"
