"""Helpers the tests share (conftest.py keeps only fixtures): request bodies, waits, fakes."""
