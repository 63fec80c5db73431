"""The bottom layer: errors, files, text, secrets, clock, locks, processes, GPUs and hub ids; imports no other fipo package."""
