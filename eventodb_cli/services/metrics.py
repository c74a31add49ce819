"""Consumer metrics in the Prometheus text exposition format 0.0.4.

One writer for both places that expose them: ``consume --health-port`` (``/metrics``) and
``group describe --format prometheus`` (a file for node_exporter's textfile collector). No
dependency: the format is a few lines of text.

A row is a dict: the label values under the label names given (``category``, ``group``,
``member``, ``size``, ...; a missing or ``None`` label is left out of that sample) and the values
under the keys of ``METRICS`` (``position``, ``head``, ``lagMessages``, ``lagSeconds``,
``messagesHandled``, ``handlerFailures``; a missing or ``None`` value is left out, so "unknown" is
an absent sample, never a made-up 0). A family without any sample is left out whole.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LABELS = ("category", "group", "member", "size")

# row key -> (metric name, type, help)
METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("position", "eventodb_consumer_position", "gauge",
     "Global position of the last message the consumer processed (Eventide's Recorded "
     "position)."),
    ("head", "eventodb_consumer_head", "gauge",
     "Highest global position of the category."),
    ("lagMessages", "eventodb_consumer_lag_messages", "gauge",
     "Messages of the member's share not yet processed."),
    ("lagSeconds", "eventodb_consumer_lag_seconds", "gauge",
     "Age in seconds of the oldest message of the share not yet processed (0 when none)."),
    ("messagesHandled", "eventodb_consumer_messages_handled_total", "counter",
     "Messages the handler has taken since the consumer started."),
    ("handlerFailures", "eventodb_consumer_handler_failures_total", "counter",
     "Handler failures since the consumer started."),
)

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def escape_label_value(value: object) -> str:
    r"""Backslash, double quote and line feed escaped as ``\\``, ``\"`` and ``\n``."""
    return (str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))


def format_value(v: float | int) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _labels(row: Mapping, labels: Sequence[str]) -> str:
    parts = []
    for name in labels:
        v = row.get(name)
        if v is None:
            continue
        parts.append(f'{name}="{escape_label_value(v)}"')
    return "{" + ",".join(parts) + "}" if parts else ""


def prometheus_text(rows: Iterable[Mapping], labels: Sequence[str] = LABELS) -> str:
    """The exposition text of ``rows``: ``# HELP`` and ``# TYPE`` then the samples, family by
    family, ending with a newline (empty when nothing is known)."""
    for name in labels:
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"not a Prometheus label name: {name!r}")
    rows = list(rows)
    out: list[str] = []
    for key, metric, mtype, help_text in METRICS:
        samples = []
        for row in rows:
            v = row.get(key)
            if v is None or isinstance(v, str):
                continue
            samples.append(f"{metric}{_labels(row, labels)} {format_value(v)}")
        if samples:
            out.append(f"# HELP {metric} {help_text}")
            out.append(f"# TYPE {metric} {mtype}")
            out.extend(samples)
    return "\n".join(out) + "\n" if out else ""
