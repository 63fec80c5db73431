"""The FIPO loss in pure torch (``future_kl``, ``fipo``) and its knobs (``knobs``, no torch).

Import the submodules directly; this package imports nothing so that reading the knobs
never pulls in torch.
"""
