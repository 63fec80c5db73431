"""Runs on disk: the layout of experiments, runs, sweeps and evaluations, status records, metrics files, the registry."""
