"""Who holds the key of the encrypted chat history: the system keyring or a passphrase
(issue 17). No Qt, no database: ``engine.history.cipher`` takes the key this gives."""
