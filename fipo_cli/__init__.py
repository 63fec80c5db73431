"""fipo: run FIPO (Future-KL Influenced Policy Optimization) on verl."""

__version__ = "0.1.0"
