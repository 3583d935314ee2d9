"""``modelcanary promote|abort|pause|resume|retry|rollback NAME``: ask the operator.

The CLI never changes the rollout itself. It writes the request into the
annotations ``modelcanary.io/action`` and ``modelcanary.io/action-id`` (a fresh
id, so asking twice for the same thing is two requests) with one merge patch,
then waits for the operator to answer in ``status.lastAction`` with that id.
Only the operator knows whether the action applies in the current phase, so
the answer, and its exit code, are the operator's. Annotations rather than
spec fields keep a GitOps tool from reverting the request and keep the spec
the user's (see rollout/actions.py).

Exit codes:
  0  the operator accepted the action (or, with --no-wait, the request is recorded)
  1  error: no kubeconfig, cluster unreachable, unknown name, API server refused
  2  bad usage
  3  the operator refused the action; its reason is printed
  4  no answer within --timeout: the operator may not be running
  130  interrupted (Ctrl-C) while waiting; the request stays recorded
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

import kr8s

from modelcanary.cli import common
from modelcanary.rollout.actions import ANNOTATION, ANNOTATION_ID

POLL_SECONDS = 0.5

_DESCRIPTIONS = {
    "promote": (
        "skip the current pause (or end the bake); --full goes to 100%% and promotes now",
        "Skip the pause the canary waits in, or end the bake and promote. With --full, go "
        "straight to 100% and promote, skipping the remaining steps and the bake.",
    ),
    "abort": (
        "roll the canary back to stable; it is not retried until retry or a new predictor",
        "Send all traffic back to the stable revision and mark the candidate Aborted.",
    ),
    "pause": (
        "hold the canary at its current step (analysis and rollback go on)",
        "Hold the canary at its current step. Analysis goes on and can still roll back.",
    ),
    "resume": (
        "continue a paused canary, or leave a pause that waits for a person",
        "Continue a paused canary, or move past a pause step that has no duration.",
    ),
    "retry": (
        "start the canary again for a desired revision that failed or was aborted",
        "Start a new canary for the spec's revision after it was rolled back or aborted.",
    ),
    "rollback": (
        "restore an earlier revision from the history to 100%%",
        "Restore a revision from status.history to 100% of the traffic, aborting any canary.",
    ),
}


def add_parser(commands: Any) -> None:
    for name, (help_text, description) in _DESCRIPTIONS.items():
        parser = common.add_command(commands, name, help_text, description)
        parser.add_argument("name", help="the ModelDeployment")
        if name == "promote":
            parser.add_argument(
                "--full", action="store_true", help="go to 100%% and promote now, no bake"
            )
        if name == "rollback":
            parser.add_argument(
                "--to", required=True, metavar="REV", help="a revision listed by `history`"
            )
        parser.add_argument(
            "--timeout",
            type=float,
            default=30.0,
            help="seconds to wait for the operator's answer (default 30)",
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="return as soon as the request is recorded, without the operator's answer",
        )
        parser.set_defaults(handler=run, action=name)


def request_value(args: argparse.Namespace) -> str:
    """The annotation's value, in the words rollout/actions.py parses."""
    if args.action == "promote" and args.full:
        return "promote --full"
    if args.action == "rollback":
        return f"rollback {args.to}"
    return str(args.action)


def wait_for_answer(
    read: Callable[[], dict[str, Any]],
    action_id: str,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """status.lastAction once it answers ``action_id``; None at the deadline."""
    deadline = clock() + timeout
    while True:
        answer = (read().get("status") or {}).get("lastAction") or {}
        if answer.get("id") == action_id:
            return dict(answer)
        remaining = deadline - clock()
        if remaining <= 0:
            return None
        sleep(min(POLL_SECONDS, remaining))


def run(args: argparse.Namespace) -> int:
    try:
        return _request(args)
    except common.CommandError as error:
        return common.fail(error)


def _request(args: argparse.Namespace) -> int:
    api, namespace = common.connect(args)
    md = common.fetch(api, namespace, args.name)
    value = request_value(args)
    action_id = f"cli-{uuid.uuid4().hex[:12]}"
    try:
        md.patch(
            {"metadata": {"annotations": {ANNOTATION: value, ANNOTATION_ID: action_id}}},
            type="merge",
        )
    except kr8s.ServerError as error:
        raise common.api_error(error, f"annotate modeldeployment {args.name}") from None
    except common.UNREACHABLE as error:
        raise common.CommandError(f"cannot reach the cluster: {error}") from None
    target = f"modeldeployment.modelcanary.io/{args.name}"
    if args.no_wait:
        print(f"{target}: {value} requested (id {action_id})")
        return common.OK

    def read() -> dict[str, Any]:
        try:
            md.refresh()
        except kr8s.NotFoundError:
            raise common.CommandError(
                f"modeldeployment {args.name} was deleted while waiting for the operator"
            ) from None
        except kr8s.ServerError as error:
            raise common.api_error(error, f"read modeldeployment {args.name}") from None
        except common.UNREACHABLE as error:
            raise common.CommandError(f"cannot reach the cluster: {error}") from None
        return common.as_data(md)

    try:
        answer = wait_for_answer(read, action_id, args.timeout)
    except KeyboardInterrupt:
        raise common.CommandError(
            f"interrupted; {value!r} (id {action_id}) stays requested and the operator"
            " will still carry it out if it applies",
            code=common.INTERRUPTED,
        ) from None
    if answer is None:
        raise common.CommandError(
            f"no answer from the operator to {value!r} within {args.timeout:g}s"
            f" (request id {action_id}); is the operator running and watching"
            f" namespace {namespace}?",
            code=common.NO_ANSWER,
        )
    message = answer.get("message") or ""
    if not answer.get("accepted"):
        raise common.CommandError(f"the operator refused {value!r}: {message}", code=common.REFUSED)
    print(f"{target}: {value} accepted: {message}")
    return common.OK
