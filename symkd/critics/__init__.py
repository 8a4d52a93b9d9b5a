"""Critics: score generated items and decide keep or drop (see base.py, registry.py)."""
