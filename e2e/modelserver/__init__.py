"""Real model-server processes for the test data plane (DESIGN.md section 4).

``python -m e2e.modelserver`` serves one revision of a small fixed model with
Prometheus metrics and fault injection (see :mod:`e2e.modelserver.server`);
:class:`ModelServerProcess` runs one as a harness-owned child process.
"""

from e2e.modelserver.process import ModelServerProcess
from e2e.modelserver.server import REVISION_HEADER, Faults, LogisticModel

__all__ = ["REVISION_HEADER", "Faults", "LogisticModel", "ModelServerProcess"]
