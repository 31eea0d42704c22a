"""Hearth's engine: everything a CLI would share. Pure Python, no Qt.

Imports here stay cheap: llama_cpp is imported only by ``engine.inference.session``.
"""
