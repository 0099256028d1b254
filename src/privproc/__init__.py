"""privproc: a Private Processing system (OHTTP, HPKE, Privacy Pass, transparency logs, TEEs)."""

__version__ = "0.1.0"
