"""Models and tasks fipo builds on this machine instead of downloading (``builtin:`` paths)."""
