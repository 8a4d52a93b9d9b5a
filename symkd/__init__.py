"""symkd: agent-and-symbolic knowledge distillation.

Teacher LLMs -> raw generations (cached in SQLite) -> critics -> curated tables -> graphs and
strategy libraries -> students. The public API lives in :mod:`symkd.api`; importing this
package stays light (no torch, no transformers).
"""

__version__ = "0.1.0"

from symkd.api import *  # noqa: E402,F401,F403
from symkd.api import __all__ as _api_all  # noqa: E402

__all__ = ["__version__", *_api_all]
