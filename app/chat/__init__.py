"""The window's chat side, split by responsibility and wired in ``app.gui``.

- ``conversations``: the open chat, the list, rename/delete/undo/copy, per-chat settings,
  and the turn the model reads of a chat;
- ``replies``: send, edit, regenerate, continue, the reply as it streams, and the
  ``ResponseState`` that gates every action;
- ``context``: the context meter, the "context full" question, reading ahead after
  a model switch;
- ``history_actions``: search, pin, undo a delete, export, import;
- ``port``: what the models and settings code may reach of all this.
"""
