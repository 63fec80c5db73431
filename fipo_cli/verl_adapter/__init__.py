"""Everything that knows verl 0.9.1: keys, overrides, config composition, the plugin, attention, CPU patches, checkpoints."""
