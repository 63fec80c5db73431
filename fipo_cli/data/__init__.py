"""Training data: preparing verl parquet files, reading problem sources, prompts, the bundled benchmark sets."""
