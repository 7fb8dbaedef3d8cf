"""Experiments: grids of runs, attention-variant comparisons, and the paper-shaped report (tables, plots)."""
