"""Launchers: the ways fipo starts verl's trainer once the command is built.

``local`` runs it in a subprocess on this machine and checks, without importing torch, that
the machine has the GPUs the run needs.
"""
