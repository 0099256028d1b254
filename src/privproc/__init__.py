"""privproc: a Private Processing system (OHTTP, HPKE, Privacy Pass, transparency logs, TEEs)."""

from privproc.errors import PrivprocError

__all__ = ["PrivprocError", "__version__"]

__version__ = "0.1.0"
