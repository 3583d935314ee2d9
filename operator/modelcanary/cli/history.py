"""``modelcanary history NAME [-o json|yaml]``: the revisions a ModelDeployment rolled out.

``rollback --to REV`` takes its revision from this list, so the table leads
with the revision and marks the one serving (stable) and the one a failed
candidate returns to (last known-good). It reads ``status.history`` as
stored; ``-o`` prints that list as data.

Exit codes:
  0  shown
  1  error: no kubeconfig, cluster unreachable, unknown name, API server refused
  2  bad usage
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from modelcanary.cli import common, status, view


def add_parser(commands: Any) -> None:
    parser = common.add_command(
        commands,
        "history",
        "list the revisions rolled out, with outcomes; marks stable and last known-good",
        "List status.history: revision, model version, outcome, created, finished, reason.",
        epilog=common.READ_EXIT_CODES,
    )
    parser.add_argument("name", help="the ModelDeployment")
    status.add_output_option(parser)
    parser.set_defaults(handler=run)


def history_table(md: Mapping[str, Any]) -> Table:
    state = md.get("status") or {}
    stable = state.get("stableRevision")
    known_good = (state.get("lastKnownGood") or {}).get("revision")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("REVISION", "MODEL", "OUTCOME", "CREATED", "FINISHED", "MARKS", "REASON"):
        table.add_column(column, overflow="fold")
    for entry in state.get("history") or ():
        revision = entry.get("revision") or "-"
        marks = [
            mark
            for mark, holds in (
                ("stable", revision == stable),
                ("last-known-good", revision == known_good),
            )
            if holds
        ]
        table.add_row(
            revision,
            str(((entry.get("predictor") or {}).get("model") or {}).get("version") or "-"),
            str(entry.get("outcome") or "-"),
            str(entry.get("createdAt") or "-"),
            str(entry.get("finishedAt") or "-"),
            ",".join(marks),
            str(entry.get("reason") or ""),
            style="bold" if revision == stable else "",
        )
    return table


def history_lines(md: Mapping[str, Any]) -> list[str]:
    buffer = io.StringIO()
    Console(
        file=buffer, width=view.PLAIN_WIDTH, color_system=None, no_color=True, highlight=False
    ).print(history_table(md))
    return [line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines()]


def run(args: argparse.Namespace) -> int:
    try:
        api, namespace = common.connect(args)
        md = common.as_data(common.fetch(api, namespace, args.name))
    except common.CommandError as error:
        return common.fail(error)
    entries = (md.get("status") or {}).get("history") or []
    if args.output:
        print(status.dump(entries, args.output))
        return common.OK
    if not entries:
        print(f"modeldeployment {args.name} has no history yet")
        return common.OK
    console = Console()
    if console.is_terminal:
        console.print(history_table(md))
    else:
        print("\n".join(history_lines(md)))
    return common.OK
