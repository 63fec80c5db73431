"""Launchers: one interface (:mod:`fipo_cli.launch.base`) that local, SLURM and Ray implement, and what runs
with them: the trainer's subprocess (``process``), a run's private Ray head (``ray_head``) and the wait for
a SLURM job's Ray cluster (``ray_wait``, run inside the job). :func:`fipo_cli.launch.launchers.launcher_for`
picks one by name; nothing outside this package asks which launcher it has.
"""
