"""``modelcanary lint FILE...``: check manifests offline, before they reach a cluster.

It validates every ModelDeployment and RollbackDrill document with the very
pydantic models the operator parses them with (api/validation.py), so lint,
the operator's InvalidSpec condition and, for the rules CEL expresses, the API
server refuse the same manifests with the same words and field paths. Other
kinds in the same files are skipped, as a multi-document manifest of a whole
app holds Services and the like too.

Exit codes:
  0  every ModelDeployment and RollbackDrill document is valid
  1  at least one is invalid (each error printed with its file, document and field path)
  2  bad usage, or a file that cannot be read or is not YAML
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from modelcanary.api.modeldeployment import (
    GROUP,
    ModelDeployment,
)
from modelcanary.api.rollbackdrill import RollbackDrill
from modelcanary.api.validation import FieldError, InvalidSpecError, parse
from modelcanary.cli import common

MODELS: dict[str, type[BaseModel]] = {
    "ModelDeployment": ModelDeployment,
    "RollbackDrill": RollbackDrill,
}


@dataclass(frozen=True)
class DocumentErrors:
    """The errors of one document of a file."""

    file: str
    index: int
    label: str
    errors: list[FieldError]

    def lines(self) -> list[str]:
        return [f"{self.file}: document {self.index} ({self.label}): {e}" for e in self.errors]


class UnreadableError(Exception):
    """A file lint cannot read as YAML at all."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "lint",
        help="validate ModelDeployment and RollbackDrill manifests offline",
        description=(
            "Validate the ModelDeployment and RollbackDrill documents of multi-document YAML"
            " files with the operator's own models, offline; other kinds are skipped. Each"
            " error names its file, document and field path."
        ),
        epilog=(
            "exit codes:\n  0  all valid\n  1  some document invalid\n"
            "  2  bad usage, unreadable file or not YAML\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML files ('-' for stdin)")
    parser.set_defaults(handler=run)


def _label(document: Mapping[str, Any]) -> str:
    name = (document.get("metadata") or {}).get("name") if isinstance(document, Mapping) else None
    kind = document.get("kind") or "?"
    return f"{kind} {name}" if name else str(kind)


def check_document(document: Any) -> tuple[str, list[FieldError]] | None:
    """(label, errors) for a document lint validates; None for other kinds."""
    if not isinstance(document, Mapping):
        return "?", [FieldError("", "a document must be a mapping (an object)")]
    api_version = str(document.get("apiVersion") or "")
    model = MODELS.get(str(document.get("kind")))
    if model is None or api_version.split("/", maxsplit=1)[0] != GROUP:
        return None
    label = _label(document)
    try:
        parse(model, dict(document))
    except InvalidSpecError as error:
        return label, error.errors
    errors = []
    if not (document.get("metadata") or {}).get("name") and not (
        document.get("metadata") or {}
    ).get("generateName"):
        errors.append(FieldError("metadata.name", "a name (or generateName) is required"))
    return label, errors


def lint_text(file: str, text: str) -> tuple[int, list[DocumentErrors]]:
    """(documents checked, their errors); UnreadableError when ``text`` is not YAML."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise UnreadableError(f"{file}: not YAML: {error}") from None
    checked = 0
    found = []
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        result = check_document(document)
        if result is None:
            continue
        checked += 1
        label, errors = result
        if errors:
            found.append(DocumentErrors(file, index, label, errors))
    return checked, found


def _read(file: str) -> str:
    try:
        return sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableError(f"{file}: cannot read: {error}") from None


def run(args: argparse.Namespace) -> int:
    code = common.OK
    for file in args.files:
        try:
            checked, found = lint_text(file, _read(file))
        except UnreadableError as error:
            print(f"error: {error}", file=sys.stderr)
            code = common.USAGE
            continue
        for document in found:
            print("\n".join(document.lines()))
        if found:
            code = max(code, common.ERROR)
        else:
            print(f"{file}: ok ({checked} document{'s' if checked != 1 else ''} checked)")
    return code
