"""Hearth's local OpenAI-compatible API server (no Qt: the window and `hearth serve` share it)."""
