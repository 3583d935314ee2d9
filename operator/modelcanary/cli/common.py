"""What every cluster-facing ``modelcanary`` command shares.

The options (``-n/--namespace``, ``--kubeconfig``), the connection to the API
server, one GET of a ModelDeployment, and the exit codes. Each failure becomes
one ``error:`` line on stderr and an exit code, never a traceback: people run
these commands from scripts and CI as much as by hand.

Exit codes:
  0  done, or the operator accepted the action
  1  error: no kubeconfig, cluster unreachable, unknown name, API refused, invalid file
  2  bad usage (argparse)
  3  the operator refused the action (it does not apply in the current phase)
  4  no answer from the operator within --timeout (is the operator running?)
  130  interrupted (Ctrl-C) while waiting for the operator
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx
import kr8s
from kr8s.objects import APIObject, new_class

OK = 0
ERROR = 1
USAGE = 2
REFUSED = 3
NO_ANSWER = 4
INTERRUPTED = 130  # the shell's convention for Ctrl-C

EXIT_CODES = """\
exit codes:
  0  done, or the operator accepted the action
  1  error: no kubeconfig, cluster unreachable, unknown name, API server refused
  2  bad usage
  3  the operator refused the action (invalid in the current phase)
  4  no answer from the operator within --timeout (is it running?)
  130  interrupted (Ctrl-C) while waiting for the operator; the request stays recorded
"""

# What kr8s raises when there is no usable kubeconfig or no API server at the
# other end: reported as "cannot reach the cluster", never as a traceback.
UNREACHABLE = (OSError, ValueError, httpx.HTTPError)

READ_EXIT_CODES = """\
exit codes:
  0  shown (for --watch: ended with Ctrl-C)
  1  error: no kubeconfig, cluster unreachable, unknown name, API server refused
  2  bad usage
"""

ModelDeployment = new_class("ModelDeployment.modelcanary.io/v1alpha1", namespaced=True)


class CommandError(Exception):
    """A failure to report as one ``error:`` line and an exit code."""

    def __init__(self, message: str, code: int = ERROR) -> None:
        super().__init__(message)
        self.code = code


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace", "-n", default=None, help="default: the kubeconfig context's namespace"
    )
    parser.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")


def add_command(
    commands: Any, name: str, help_text: str, description: str, epilog: str = EXIT_CODES
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its exit codes."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_cluster_options(parser)
    return parser


def connect(args: argparse.Namespace) -> tuple[kr8s.Api, str]:
    """The API client and the namespace to work in."""
    try:
        api = kr8s.api(kubeconfig=args.kubeconfig) if args.kubeconfig else kr8s.api()
        return api, args.namespace or api.namespace
    except (*UNREACHABLE, kr8s.ServerError) as error:
        raise CommandError(f"cannot reach the cluster: {error}") from None


def api_error(error: kr8s.ServerError, doing: str) -> CommandError:
    status = error.response.status_code if error.response is not None else None
    if status in (401, 403):
        return CommandError(f"not allowed to {doing}: {error}")
    return CommandError(f"the API server refused to {doing}: {error}")


def fetch(api: kr8s.Api, namespace: str, name: str) -> APIObject:
    """One GET of the ModelDeployment (a GET needs only the get verb, not list)."""
    md = ModelDeployment({"metadata": {"name": name, "namespace": namespace}}, api=api)
    try:
        md.refresh()
    except kr8s.NotFoundError:
        raise CommandError(f"modeldeployment {name} not found in namespace {namespace}") from None
    except kr8s.ServerError as error:
        raise api_error(error, f"read modeldeployment {name}") from None
    except UNREACHABLE as error:
        raise CommandError(f"cannot reach the cluster: {error}") from None
    return md


def as_data(obj: APIObject) -> dict[str, Any]:
    """The object as plain dicts and lists (kr8s keeps it in Box objects, which YAML refuses)."""
    data: dict[str, Any] = json.loads(json.dumps(obj.raw))
    return data


def fail(error: CommandError) -> int:
    print(f"error: {error}", file=sys.stderr)
    return error.code
