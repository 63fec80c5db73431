"""Everything that knows verl 0.9.1: its keys, overrides, config composition, the plugin verl loads, attention, CPU patches, checkpoints."""
