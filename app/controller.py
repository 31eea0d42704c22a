"""Transitional name: app/model_manager.py and app/settings_controller.py (helper
``mdl``'s) still import ``ChatController`` for their type hints. What they are
given is the ``ChatPort`` (app/chat/port.py). Delete this file with the port,
once they take the EngineClient, the Notifier and the controllers directly."""

from app.chat.port import ChatPort as ChatController

__all__ = ["ChatController"]
