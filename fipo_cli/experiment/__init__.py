"""An experiment: its typed, validated config (schema and loading), KEY=VALUE overrides, recipes, launcher scripts."""
