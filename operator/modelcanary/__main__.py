"""The ``modelcanary`` command: ``modelcanary run`` starts the operator; the rest is the CLI.

``python -m modelcanary run`` (or ``make run``) runs it against the current
kubeconfig, outside the cluster, which is how the tests and the demo run it
too. In a cluster the chart runs the same command in the operator's image.

The other commands are the CLI, one module per concern under modelcanary/cli/:
status, history, promote, abort, pause, resume, retry, rollback and drill are
clients of the API server (the operator answers the actions), lint works
offline. Each module's ``add_parser`` registers its subcommands and the
function that runs them (``set_defaults(handler=...)``). Installed as
``kubectl-modelcanary``, the same command is the kubectl plugin
``kubectl modelcanary``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import secrets
import socket
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from modelcanary import __version__
from modelcanary.cli import actions, drill, history, lint, report, status
from modelcanary.cli.common import EXIT_CODES
from modelcanary.ratelimit import DEFAULT_BURST, DEFAULT_QPS


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: a number above 0, or a message that says how to turn the limit off."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            whole = "whole " if kind is int else ""
            raise argparse.ArgumentTypeError(f"not a {whole}number: {text!r}") from None
        if not 0 < value < math.inf:  # also refuses nan
            raise argparse.ArgumentTypeError(
                f"must be a number above 0, got {text}; --no-api-rate-limit turns the limit off"
            )
        return value

    return parse


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _own_namespace() -> str:
    """Where the shard Leases live: the pod's namespace (downward API or its token's)."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def _run(args: argparse.Namespace) -> int:
    # Imported here so that `--version` and `--help` do not load kopf.
    import kopf  # noqa: PLC0415

    from modelcanary import handlers  # noqa: PLC0415 - registers the handlers with kopf

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.shards is not None and args.shards < 1:
        raise SystemExit(f"--shards must be at least 1, not {args.shards}")
    if args.shard_lease_seconds < 1:
        raise SystemExit(
            f"--shard-lease-seconds must be at least 1, not {args.shard_lease_seconds}"
        )
    if args.shards is not None and args.peering is not None:
        raise SystemExit("--shards and --peering exclude each other: shards replace peering")
    memo = kopf.Memo(
        shards=args.shards,
        shard_identity=args.shard_identity or os.environ.get("POD_NAME") or socket.gethostname(),
        shard_namespace=args.shard_namespace or _own_namespace(),
        shard_lease_seconds=args.shard_lease_seconds,
        metrics_port=args.metrics_port,
        drill_image=args.drill_image,
        max_concurrent_passes=args.max_concurrent_passes,
        namespaces=args.namespace or None,
        api_rate_limit=None if args.no_api_rate_limit else (args.api_qps, args.api_burst),
        gc_freeze=not args.no_gc_freeze,
    )
    settings = kopf.OperatorSettings()
    # How long a silent replica counts as alive: a standby takes over at most
    # this long after the active replica's last heartbeat.
    settings.peering.lifetime = args.peering_lifetime
    kopf.run(
        # Sharded: start-up and clean-up only; the object loops run in the dispatcher.
        registry=handlers.SHARDED if args.shards is not None else None,
        settings=settings,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        standalone=args.peering is None,
        peering_name=args.peering,
        # A priority of its own for each replica: kopf pauses every operator
        # that sees a peer of the same priority, so replicas all at the default
        # would all stand by. The highest acts; the chance two replicas draw the
        # same of 2**31 is negligible.
        priority=secrets.randbelow(2**31) if args.peering else None,
        liveness_endpoint=args.liveness,
        memo=memo,
    )
    del handlers
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # kr8s names the Kubernetes versions it was released against and warns on
    # every newer server; this project is tested on its pinned newer one, and a
    # warning on every command would only teach people to ignore stderr.
    warnings.filterwarnings(
        "ignore", message=r"Kubernetes version .* is not supported", category=UserWarning
    )
    parser = argparse.ArgumentParser(
        prog="modelcanary",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modelcanary {__version__}")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "--namespace", "-n", action="append", help="watch only this namespace (repeatable)"
    )
    run.add_argument("--metrics-port", type=int, default=8000, help="0 turns /metrics off")
    run.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    run.add_argument(
        "--peering", default=None, help="a KopfPeering name for HA; standalone when unset"
    )
    run.add_argument(
        "--peering-lifetime",
        type=int,
        default=60,
        help="seconds a replica's peering heartbeat stays valid (the takeover delay)",
    )
    run.add_argument(
        "--shards",
        type=int,
        default=None,
        help="share the ModelDeployments among replicas through this many shard Leases "
        "(docs/sharding.md; the chart's sharding.enabled); off when unset",
    )
    run.add_argument(
        "--shard-identity",
        default=None,
        help="this replica's name on the Leases (default: $POD_NAME, else the host name)",
    )
    run.add_argument(
        "--shard-lease-seconds",
        type=int,
        default=15,
        help="a shard Lease's duration; the renew deadline is 2/3 of it and a round "
        "every 2/15 (15: client-go's 15 / 10 / 2 s; a dead replica's shards move "
        "within about 1.4 times this)",
    )
    run.add_argument(
        "--shard-namespace",
        default=None,
        help="where the shard Leases live (default: $POD_NAMESPACE, else the pod's own)",
    )
    run.add_argument(
        "--drill-image",
        default=os.environ.get("MODELCANARY_IMAGE"),
        help="image of scheduled drill Jobs (default: $MODELCANARY_IMAGE, else this release's)",
    )
    run.add_argument(
        "--max-concurrent-passes",
        type=int,
        default=None,
        help="ModelDeployment passes in flight at once (default 8; bounds the API client's queue)",
    )
    limit = run.add_argument_group(
        "API rate limit",
        "a token bucket on the operator's Kubernetes API requests (docs/operator.md)",
    )
    limit.add_argument(
        "--api-qps",
        type=_positive(float),
        default=DEFAULT_QPS,
        metavar="QPS",
        help=f"requests per second once the burst is spent (default {DEFAULT_QPS:g})",
    )
    limit.add_argument(
        "--api-burst",
        type=_positive(int),
        default=DEFAULT_BURST,
        metavar="N",
        help=f"requests that may go at once (default {DEFAULT_BURST})",
    )
    limit.add_argument(
        "--no-api-rate-limit",
        action="store_true",
        help="send API requests as fast as they come (--api-qps and --api-burst are ignored)",
    )
    run.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="never freeze what survives a full garbage collection (pauses are still "
        "timed; docs/operator.md)",
    )
    run.add_argument("--verbose", "-v", action="store_true")
    run.set_defaults(handler=_run)
    drill.add_parser(commands)
    report.add_parser(commands)
    status.add_parser(commands)
    history.add_parser(commands)
    actions.add_parser(commands)
    lint.add_parser(commands)
    args = parser.parse_args(argv)
    # A module whose add_parser sets no handler is dispatched by its command's name.
    by_name = {"drill": drill.create, "report": report.run}
    handler = getattr(args, "handler", None) or by_name.get(args.command)
    if handler is None:
        parser.print_help()
        return 0
    code: int = handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
