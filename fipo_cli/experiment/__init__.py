"""Experiments: their schema, loading, KEY=VALUE parsing, recipes and imported launcher scripts."""
