"""The conventions every API model shares.

The pydantic models in this package are the single source of truth for the
``modelcanary.io`` API: the CRDs are generated from them, and the operator and
the CLI parse with them. So each model is written the way the Kubernetes API
reads: camelCase field names, a docstring on every field (it becomes the
``kubectl explain`` text), and unknown fields refused rather than ignored.
"""

from __future__ import annotations

import copy
import enum
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Final, Self, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

# Go's time.ParseDuration grammar restricted to the units that make sense for a
# rollout: "90s", "1m30s", "1.5h", "250ms".
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# A DNS-1123 label: what Kubernetes accepts as a Service or Deployment name part.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Values that end up inside PromQL label matchers and object labels: no quotes,
# backslashes, braces or spaces, so no value can break out of a matcher.
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.+]*[A-Za-z0-9])?$"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, Any]) -> dict[str, Any]:
    """CEL rules for a model's ``json_schema_extra``."""
    return {"x-kubernetes-validations": list(rules)}


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration ("1m30s") into a timedelta."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def _valid_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, max_length=32),
    AfterValidator(_valid_duration),
]
"""A Go-style duration string; kept as written so the spec round-trips unchanged."""


def _cut_to(limit: int) -> Callable[[str], str]:
    def cut(text: str) -> str:
        data = text.encode()
        if len(data) <= limit:
            return text
        return data[: limit - len(ELLIPSIS.encode())].decode(errors="ignore") + ELLIPSIS

    return cut


ELLIPSIS = "\u2026"


def shown(limit: int) -> PlainSerializer:
    """Text the operator writes for people (a reason, a message, a quoted error), cut to
    ``limit`` bytes whenever it is written out. Cut on the way out rather than refused on
    the way in, so that no assignment anywhere can grow the status past what
    ``api/size.py`` promises fits in etcd, and no status is refused for a long message."""
    return PlainSerializer(_cut_to(limit), return_type=str, when_used="json")


MESSAGE_BYTES = 1024
"""A reason, a note or a summary line, as written to the status."""

ROW_MESSAGE_BYTES = 256
"""One metric row's message."""

SLICE_VALUE_BYTES = 128
"""A slice label's value, as judged and shown."""

ShownText = Annotated[str, shown(MESSAGE_BYTES)]
"""Free text the operator writes, at most :data:`MESSAGE_BYTES` when written."""


class ApiModel(BaseModel):
    """Base of every spec and status model."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The Kubernetes form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def deep_copy(self) -> Self:
        """What ``model_copy(deep=True)`` gives, at about 40% of its cost.

        Each pass copies the status once, so that ``decide`` leaves its input as it
        was; pydantic's deep copy goes through ``copy.deepcopy`` and its memo for
        every value, and was most of a pass's CPU in a restart (py-spy, N = 1,000).
        The models are trees of models, lists, dicts and immutable values (str,
        numbers, datetimes, enums), so a copy that rebuilds the containers and
        shares the immutable values is the same copy. It sets the instance state
        the way pydantic's own ``__copy__`` does."""
        return cast(Self, _copied(self))


def _copied(value: Any) -> Any:
    if isinstance(value, BaseModel):
        copied = object.__new__(type(value))
        extra, private = value.__pydantic_extra__, value.__pydantic_private__
        object.__setattr__(copied, "__dict__", {k: _copied(v) for k, v in value.__dict__.items()})
        object.__setattr__(copied, "__pydantic_fields_set__", set(value.__pydantic_fields_set__))
        object.__setattr__(copied, "__pydantic_extra__", None if extra is None else _copied(extra))
        object.__setattr__(
            copied, "__pydantic_private__", None if private is None else _copied(private)
        )
        return copied
    kind = type(value)
    if kind is list:
        return [_copied(item) for item in value]
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    if kind is tuple:
        return tuple(_copied(item) for item in value)
    if kind in _IMMUTABLE or isinstance(value, enum.Enum):
        return value
    return copy.deepcopy(value)  # anything else: as pydantic would


_IMMUTABLE: Final = frozenset(
    {str, int, float, bool, type(None), bytes, datetime, date, time, timedelta, frozenset}
)
"""Values a copy may share: nothing can change them in place."""
