"""The package version, in a module of its own: the core reads it without importing the face
(``symkd/__init__.py``, which assembles the public API)."""

__version__ = "0.1.0"
