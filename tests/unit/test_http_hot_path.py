"""The HTTP client's per-request work stays cheap (pyproject.toml: sniffio).

httpcore, under kr8s's httpx, asks which async library runs several times per
request with ``import sniffio``. Without sniffio installed every ask is a failed
import, which walks the import system's finders and every sys.path entry."""

from __future__ import annotations

import asyncio
import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

import pytest
from httpcore._synchronization import current_async_library

pytestmark = pytest.mark.unit


class ImportSpy(importlib.abc.MetaPathFinder):
    """Records every import the import system had to search for."""

    def __init__(self) -> None:
        self.searched: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        self.searched.append(fullname)  # and finds nothing: the next finder looks


def test_asking_for_the_event_loop_searches_no_import_path() -> None:
    async def ask(times: int) -> list[str]:
        return [current_async_library() for _ in range(times)]

    assert asyncio.run(ask(1)) == ["asyncio"]  # the first ask may import
    spy = ImportSpy()
    sys.meta_path.insert(0, spy)
    try:
        answers = asyncio.run(ask(3))
    finally:
        sys.meta_path.remove(spy)
    assert answers == ["asyncio"] * 3
    assert spy.searched == []
