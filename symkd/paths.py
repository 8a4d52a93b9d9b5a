"""Where the project's data folders (prompts/, critics/, graphs/) are found.

In a wheel they are packaged as ``symkd/_data/<name>``; in a source checkout or an editable
install they are the top-level folders beside ``symkd/``.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    packaged = _PKG / "_data" / name
    if packaged.is_dir():
        return packaged
    return _PKG.parent / name
