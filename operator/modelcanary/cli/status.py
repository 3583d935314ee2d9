"""``modelcanary status NAME [--watch] [-o json|yaml]``: how a rollout stands.

The view itself is cli/view.py (pure, shared with ``make demo``); this module
fetches the object and its recent Events and chooses the output: rich on a
terminal, plain text with no ANSI escapes anywhere else, or the raw object as
JSON or YAML for scripts. ``--watch`` keeps the view live, as
``kubectl argo rollouts get --watch`` does, until Ctrl-C (exit 0).

Exit codes:
  0  shown (or --watch ended by Ctrl-C)
  1  error: no kubeconfig, cluster unreachable, unknown name, API server refused
  2  bad usage
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import kr8s
import yaml
from rich.console import Console
from rich.live import Live

from modelcanary.cli import common, view

# A GET a second rather than a watch: the view also shows ages that move with
# the clock and Events that a watch of the object would not carry, a watch
# needs the list and watch verbs on top of get, and one GET a second per person
# looking costs the API server nothing.
WATCH_SECONDS = 1.0


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", "-o", choices=["json", "yaml"], default=None, help="print the data instead"
    )


def add_parser(commands: Any) -> None:
    parser = common.add_command(
        commands,
        "status",
        "show a ModelDeployment's rollout: revisions, weights, step, analysis, drills, events",
        "Show how a ModelDeployment's rollout stands, with its recent Events.",
        epilog=common.READ_EXIT_CODES,
    )
    parser.add_argument("name", help="the ModelDeployment")
    parser.add_argument("--watch", "-w", action="store_true", help="keep the view live")
    add_output_option(parser)
    parser.set_defaults(handler=run)


def dump(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")


def recent_events(api: kr8s.Api, namespace: str, name: str) -> list[dict[str, Any]]:
    """The object's Events; none rather than an error when they cannot be read."""
    try:
        events = api.get(
            "events",
            namespace=namespace,
            field_selector={"involvedObject.name": name, "involvedObject.kind": "ModelDeployment"},
            raw=True,
        )
        return [
            json.loads(json.dumps(event if isinstance(event, dict) else event.raw))
            for event in events
        ]
    except (kr8s.ServerError, *common.UNREACHABLE):
        # Events are context; a Role that cannot list them still gets the status.
        return []


def _snapshots(
    api: kr8s.Api, namespace: str, name: str
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    while True:
        md = common.fetch(api, namespace, name)
        yield common.as_data(md), recent_events(api, namespace, name)
        time.sleep(WATCH_SECONDS)


def _fingerprint(md: dict[str, Any], events: list[dict[str, Any]]) -> tuple[str, ...]:
    versions = [str((e.get("metadata") or {}).get("resourceVersion")) for e in events]
    return (str((md.get("metadata") or {}).get("resourceVersion")), *versions)


def run(args: argparse.Namespace) -> int:
    try:
        api, namespace = common.connect(args)
        md = common.fetch(api, namespace, args.name)
        if args.output and not args.watch:
            print(dump(common.as_data(md), args.output))
            return common.OK
        if not args.watch:
            events = recent_events(api, namespace, args.name)
            show(common.as_data(md), events)
            return common.OK
        try:
            watch(_snapshots(api, namespace, args.name), args.output)
        except KeyboardInterrupt:
            return common.OK
        return common.OK
    except common.CommandError as error:
        return common.fail(error)


def show(md: dict[str, Any], events: list[dict[str, Any]]) -> None:
    console = Console()
    if console.is_terminal:
        console.print(view.status_renderable(md, events))
    else:
        print("\n".join(view.status_lines(md, events)))


def watch(
    snapshots: Iterator[tuple[dict[str, Any], list[dict[str, Any]]]],
    output: str | None,
    out: Callable[[str], None] = print,
    terminal: bool | None = None,
) -> None:
    """Live on a terminal; elsewhere, one block (or document) each time something changed.

    ``terminal`` overrides the detection of stdout (tests).
    """
    console = Console()
    if (console.is_terminal if terminal is None else terminal) and output is None:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            for md, events in snapshots:
                live.update(view.status_renderable(md, events), refresh=True)
        return
    last: tuple[str, ...] | None = None
    for md, events in snapshots:
        fingerprint = _fingerprint(md, events)
        if fingerprint == last:
            continue
        last = fingerprint
        if output:
            out(dump(md, output) + ("" if output == "json" else "\n---"))
        else:
            out("\n".join(view.status_lines(md, events)) + "\n")
        sys.stdout.flush()
