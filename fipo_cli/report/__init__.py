"""`fipo report`: the paper's charts (FIPO.md §4) for a user's own runs.

``data`` reads the runs (metrics, eval results, config), ``figures`` decides what each chart
shows, ``charts`` draws them with matplotlib, ``summary`` writes the HTML page,
``wandb_charts`` logs them to W&B, ``wandb_history`` reads online W&B histories, and
``runner`` puts it together for the command.
"""
