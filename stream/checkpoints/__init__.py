"""Checkpoints: when a partition's state is saved and restored, and the stores that keep it."""
