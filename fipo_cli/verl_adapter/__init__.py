"""fipo's adapter to verl 0.9.1: what fipo knows about verl's keys, processes and defaults."""
