"""verl's entry point for fipo: ``import verl`` loads it (``verl.plugins`` in pyproject.toml), which registers
the ``future_kl`` policy loss. The plugin is :mod:`fipo_cli.verl_adapter.plugin`; this path stays because
installed environments name it in their entry-point metadata. fipo's own code imports the plugin's real path.
"""

from fipo_cli.verl_adapter.plugin import (
    CONFIG_TARGET,
    LOSS_NAME,
    FutureKLPolicyLossConfig,
    compute_policy_loss_future_kl,
)

__all__ = ["CONFIG_TARGET", "LOSS_NAME", "FutureKLPolicyLossConfig", "compute_policy_loss_future_kl"]
