"""The toy task's reward, at the path experiments name (``algorithm.reward_function: fipo_cli.toy_task:compute_score``,
written into users' fipo.yaml files). The task is :mod:`fipo_cli.assets.toy_task`.
"""

from fipo_cli.assets.toy_task import compute_score

__all__ = ["compute_score"]
