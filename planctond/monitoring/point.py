"""One measurement at one time: what every monitoring backend is fed.

A backend turns points into its own wire format (InfluxDB line protocol, Prometheus samples,
Elasticsearch documents); the series code (what a host reports) only ever makes points. Names
and tag values are ours or already made safe (`planctond.text.safe_text`) where they entered the
daemon, so a point needs no further repair, only each format's escaping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

FieldValue = float | int | bool | str


@dataclass(frozen=True)
class Point:
    measurement: str
    fields: Mapping[str, FieldValue]
    tags: Mapping[str, str] = field(default_factory=dict)
    time_ns: int = 0  # nanoseconds since the epoch

    def __post_init__(self) -> None:
        """A point no backend can take is a bug where it was made: refuse it there."""
        if not self.measurement:
            raise ValueError("a point needs a measurement name")
        if not self.fields:
            raise ValueError(f"point {self.measurement!r} has no fields")
        for name, value in self.fields.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"point {self.measurement!r}: field {name} is {value}")
        if self.time_ns < 0:
            raise ValueError(f"point {self.measurement!r}: negative time {self.time_ns}")


def seconds_to_ns(epoch: float) -> int:
    return round(epoch * 1_000_000_000)
