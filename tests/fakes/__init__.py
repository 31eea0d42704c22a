"""Stand-ins for what a test tier cannot run (each says what it replaces)."""

from tests.fakes.scripted import Piece, Reply, ScriptedBackend, failing_opener, scripted_opener

__all__ = ["Piece", "Reply", "ScriptedBackend", "failing_opener", "scripted_opener"]
