"""Entry point inside the sandbox: ``python -s -B FOLDER/inside CONFIG_JSON``.

Run as a folder, this file is ``__main__`` and ``FOLDER/inside`` is first on ``sys.path``;
that entry is replaced by ``FOLDER`` (which holds nothing but this package), so ``inside``
imports as a package and nothing of symkd or its folder shadows the stdlib. ``_CURRENT`` (the
live worker) stays reachable as ``__main__._CURRENT``, as when the worker was one script.
"""

import json
import os
import sys

sys.path[0] = os.path.dirname(sys.path[0])

from inside.worker import _CURRENT  # noqa: E402
from inside.zygote import zygote  # noqa: E402

__all__ = ["_CURRENT"]  # hostile-code tests reach the worker's socket through __main__._CURRENT

zygote(json.loads(sys.argv[1]))
