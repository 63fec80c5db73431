"""Everything that knows verl 0.9.1: its overrides, config composition, the plugin verl loads, CPU patches, checkpoints."""
