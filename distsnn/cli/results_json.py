"""The results file of ``distsnn evaluate``: what ran, when, and compact JSON."""
from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def run_record(started: datetime) -> dict:
    """The command line as typed (program name without its path) and the start time."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {"command": shlex.join(argv), "started_at": started.isoformat(timespec="seconds")}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_json(value: Any, indent: int = 2) -> str:
    """JSON with nested objects indented and every list of numbers on one line, so a
    confusion matrix takes one line per row."""
    return _render(json.loads(json.dumps(value, default=str)), indent, 0) + "\n"


def _render(value: Any, indent: int, level: int) -> str:
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_render(v, indent, level + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{_render(v, indent, level + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value)
