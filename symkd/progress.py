"""One progress style for every symkd stage: :func:`bar`.

Bars come from ``tqdm.auto``, as the trainer's do: a widget in a notebook, a text line on
stderr in a terminal (stdout stays for results). A stage names itself in the bar's
description rather than in a loose header line printed before it. A bar appears only once
its stage has run ``DELAY`` seconds, so quick (or fully cached) stages print nothing.
A finished bar keeps its final line (``leave=True``): ``leave=False`` blanks the line in a
terminal, and nested bars then leave empty lines behind; a kept line also says what ran.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

#: seconds a stage runs before its bar appears
DELAY = 0.5


def bar(iterable: Iterable[Any] | None = None, *, desc: str, unit: str, total: float | None = None,
        enabled: bool = True, initial: float = 0, **options: Any) -> Any:  # fmt: skip
    """A ``tqdm.auto`` bar (quiet when not ``enabled``); ``options`` go to tqdm as they are."""
    from tqdm.auto import tqdm

    settings: dict[str, Any] = {"dynamic_ncols": True, "delay": DELAY, "mininterval": 0.5, "leave": True, **options}
    # sys.stderr read now, not at import: it may have been redirected since (pytest, notebooks)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=not enabled,
                file=sys.stderr, **settings)  # fmt: skip
