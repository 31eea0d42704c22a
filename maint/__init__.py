"""Maintainer scripts: run from a checkout (python -m maint.NAME); not shipped in the app."""
