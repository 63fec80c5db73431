"""``python -m fipo_cli.run_task [--record DIR] RUN_DIR``, at the path batch scripts and Ray jobs name (also
jobs queued by an earlier fipo). The task is :mod:`fipo_cli.training.run_task`.
"""

import sys

from fipo_cli.training.run_task import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
