"""Model files: the catalog, this machine's hardware, memory fit, downloads, the models folder."""
