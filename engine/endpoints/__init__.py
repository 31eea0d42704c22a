"""Named connections to OpenAI-compatible servers: where they are (a small JSON file)
and their API keys (the system keyring, never a file or a log)."""
