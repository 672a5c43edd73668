"""Evaluation: cross-modal retrieval, ABX phone discriminability, per-layer features."""
