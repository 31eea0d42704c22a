"""Documents a person attaches to a chat: their text with locations (page, line), cut
into chunks by structure, and how much of a context window they cost.

A domain of its own: it knows files and text, not the chat store (engine.history keeps
the chunks and searches them) nor llama.cpp (engine.inference runs an embedding model).
"""
