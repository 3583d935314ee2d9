"""Guards on the source layout that the rest of the project relies on."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def test_operator_source_root_is_not_a_package() -> None:
    # An operator/__init__.py would shadow the standard library's `operator`.
    assert not (REPO / "operator" / "__init__.py").exists()
    assert (REPO / "operator" / "modelcanary" / "__init__.py").is_file()


def test_import_operator_gives_the_standard_library_module_in_this_process() -> None:
    import operator  # noqa: PLC0415 - the import under test must run here

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(operator.__file__).resolve().parent == stdlib
    assert operator.itemgetter(1)(["a", "b"]) == "b"


def test_import_operator_is_the_stdlib_even_with_the_source_root_first_on_the_path() -> None:
    # The worst case: the repository root and the source root both ahead of
    # the stdlib on sys.path, as an IDE or a careless PYTHONPATH may set it.
    probe = (
        "import sys; sys.path[:0] = [{root!r}, {src!r}]; "
        "import operator, sysconfig, pathlib, kopf, modelcanary; "
        "print(pathlib.Path(operator.__file__).resolve().parent == "
        "pathlib.Path(sysconfig.get_paths()['stdlib']).resolve()); "
        "print(hasattr(operator, 'attrgetter')); print(modelcanary.__file__)"
    ).format(root=str(REPO), src=str(REPO / "operator"))
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    is_stdlib, has_attrgetter, package_file = result.stdout.split()
    assert is_stdlib == "True"
    assert has_attrgetter == "True"
    assert Path(package_file) == REPO / "operator" / "modelcanary" / "__init__.py"


def test_package_never_imports_the_harness_or_pytest() -> None:
    for source in (REPO / "operator" / "modelcanary").rglob("*.py"):
        text = source.read_text()
        for forbidden in ("import e2e", "from e2e", "import pytest", "from tests"):
            assert forbidden not in text, f"{source} contains {forbidden!r}"
