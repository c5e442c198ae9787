"""Differential fuzzing: random translation setups as scenario documents,
cross-checked on the target and the model, failures shrunk to scenario files."""
