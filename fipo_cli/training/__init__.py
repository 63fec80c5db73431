"""Training: the plan of a run and its horizon, sweeps, preflight checks, and the job-side task that runs a trainer."""
