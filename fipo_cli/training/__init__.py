"""Training runs: their plan, horizon and outcome."""
