"""Capacity planning: sweeps and their runner (process pool or Ray), max rate under SLO, confidence
intervals over seeds, prices and the least-cost planner."""
