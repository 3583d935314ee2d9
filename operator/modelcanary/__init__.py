"""Model Canary Operator: ship new ML model versions behind Prometheus-gated canaries.

The package is laid out so that decisions and I/O never mix (see
../shared/DESIGN.md section 3 and the import-linter contracts in
pyproject.toml): a pure decision core decides, thin edges (kopf handlers,
traffic routers, metric providers) observe and act.

It lives under the ``operator/`` source root, which is deliberately *not* a
package: ``operator`` is also the name of a standard-library module that
pytest, kopf and the stdlib itself import.
"""

__version__ = "0.1.0"
