"""Turn pydantic's validation errors into the words the API server uses.

A spec can get past admission without being valid for this operator: a CRD
installed by an older chart, or a rule CEL cannot express. The operator then
refuses it in an ``InvalidSpec`` condition, and ``modelcanary lint`` refuses it
offline. Both name the field the way ``kubectl`` users read it,
``spec.strategy.steps[2].setWeight``, so one message reads the same wherever
it shows up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class FieldError:
    """One reason a spec is invalid, tied to the field it is about."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidSpecError(ValueError):
    """A manifest the models refuse; ``errors`` name each offending field."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(error) for error in self.errors))


def field_path(location: Sequence[int | str], prefix: str = "") -> str:
    """("strategy", "steps", 2, "setWeight") -> "spec.strategy.steps[2].setWeight"."""
    path = prefix
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def _message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    # Errors raised from our own validators read "Value error, <our words>".
    return message.removeprefix("Value error, ")


def field_errors(error: ValidationError, prefix: str = "") -> list[FieldError]:
    return [
        FieldError(field_path(tuple(item["loc"]), prefix), _message(item))
        for item in error.errors(include_url=False)
    ]


def parse(model: type[ModelT], data: Any, prefix: str = "") -> ModelT:
    """Validate ``data`` as ``model``; raise :class:`InvalidSpecError` naming the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidSpecError(field_errors(error, prefix)) from None
