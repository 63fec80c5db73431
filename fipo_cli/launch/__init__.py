"""Launchers: the ways fipo starts verl's trainer once the command is built.

``local`` runs it in a subprocess on this machine and checks, without importing torch, that
the machine has the GPUs the run needs. ``slurm`` renders a batch script that starts a Ray
cluster over the job's nodes (``ray_wait`` checks it is complete) and runs ``task``, the
trainer of one run, on its head node.
"""
