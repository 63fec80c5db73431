"""W&B: the identity of the runs fipo makes (mode, ids, names, tags, links) and W&B runs for evaluations and reports."""
