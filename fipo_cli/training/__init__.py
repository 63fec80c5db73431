"""Training: the plan of a run, sweeps, preflight checks, and the job-side task that runs a trainer."""
