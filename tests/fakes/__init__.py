"""Stand-ins for what a test tier cannot run (each says what it replaces)."""

from tests.fakes.scripted import ScriptedBackend, failing_opener, scripted_opener

__all__ = ["ScriptedBackend", "failing_opener", "scripted_opener"]
