"""Learned eviction: online features, LightGBM training and batched inference (learned-eviction issue)."""
