"""An experiment: its typed, validated config (schema and loading), KEY=VALUE overrides, the shipped recipes, imported launcher scripts."""
