"""Sweeps over policies, capacities, P:D ratios, bandwidths and request rates, and their plots."""
