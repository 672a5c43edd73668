"""Corpora, TFDS builders and Grain input pipelines."""
