"""JSON documents from another party: every way one can fail to parse is a ValueError.

``json.loads`` recurses once per level of nesting, so a few kilobytes of ``[`` raise
``RecursionError``, which a caller catching ``ValueError`` (as for every other malformed
document) lets through: a relay's error body, a log's answer or a node directory could
otherwise end a call, or a background task, with an exception nobody handles.
"""

from __future__ import annotations

import json
from typing import Any


def parse(data: str | bytes, **options: Any) -> Any:
    """``json.loads(data, **options)``; raises ValueError (``json.JSONDecodeError`` for
    bad syntax) for any document it cannot parse, including one nested too deeply."""
    try:
        return json.loads(data, **options)
    except RecursionError:
        raise ValueError("JSON document nested too deeply") from None
