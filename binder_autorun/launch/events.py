"""Reading server-sent events, the progress format of BinderHub and JupyterHub."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)


class EventStreamParser:
    """Incremental server-sent-events decoder yielding the JSON object of each event.

    Comments (``:keepalive``) and fields other than ``data`` are skipped; the
    ``data`` lines of one event are joined with newlines. A block that is not
    one JSON object is tried line by line, for servers that forget the blank
    line between events.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        events: list[dict[str, Any]] = []
        for raw_line in lines:
            line = raw_line.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                events.extend(self._dispatch())
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
        return events

    def close(self) -> list[dict[str, Any]]:
        """Dispatch what a stream that ended without a final blank line left behind."""
        leftover = self.feed(b"\n") if self._buffer else []
        return leftover + self._dispatch()

    def _dispatch(self) -> list[dict[str, Any]]:
        data, self._data = self._data, []
        if not data:
            return []
        whole = _json_or_none("\n".join(data))
        if isinstance(whole, dict):
            return [whole]
        events = [item for item in map(_json_or_none, data) if isinstance(item, dict)] if len(data) > 1 else []
        if not events:
            log.warning("ignoring an event whose data is not a JSON object (%d characters)", sum(map(len, data)))
        return events


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def iter_events(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON object of each event in a stream of network chunks."""
    parser = EventStreamParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()
