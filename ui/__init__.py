"""Hearth's widgets. They render state and emit intents (``*_requested``);
they never do engine work (see the import contracts in pyproject.toml)."""
