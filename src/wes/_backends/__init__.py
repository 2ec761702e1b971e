"""Backends: one module each."""
