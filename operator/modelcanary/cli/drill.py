"""``modelcanary drill create NAME --mode verify|warm|live``.

The scheduled CronJob runs this; people can too. It creates one RollbackDrill
for an existing ModelDeployment and prints its name; the operator does the rest.
Exit codes: 0 created, 1 could not (no kubeconfig, no such ModelDeployment,
refused by the API server), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import kr8s
from kr8s.objects import new_class

from modelcanary.api.modeldeployment import (
    DrillMode,
)
from modelcanary.api.names import LABEL_MODEL, model_label
from modelcanary.cli import common

RollbackDrill = new_class("RollbackDrill.modelcanary.io/v1alpha1", namespaced=True)


def drill_manifest(md_name: str, mode: str, source: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "RollbackDrill",
        "metadata": {
            "generateName": f"{md_name[:40]}-drill-",
            "labels": {LABEL_MODEL: model_label(md_name), "modelcanary.io/drill-source": source},
        },
        "spec": {"modelDeployment": md_name, "mode": mode},
    }


def add_parser(commands: Any) -> None:
    drill = commands.add_parser("drill", help="rollback drills")
    actions = drill.add_subparsers(dest="drill_command", required=True)
    create = actions.add_parser("create", help="create a RollbackDrill for a ModelDeployment")
    create.add_argument("name", help="the ModelDeployment")
    create.add_argument(
        "--mode", choices=[m.value for m in DrillMode], default=DrillMode.VERIFY.value
    )
    create.add_argument("--namespace", "-n", default=None)
    create.add_argument("--kubeconfig", default=None)
    create.add_argument("--source", choices=["manual", "schedule"], default="manual")


def create(args: argparse.Namespace) -> int:
    try:
        api, namespace = common.connect(args)
        # One GET: the scheduled Job's Role allows get, not list.
        common.fetch(api, namespace, args.name)
    except common.CommandError as error:
        return common.fail(error)
    manifest = drill_manifest(args.name, args.mode, args.source)
    manifest["metadata"]["namespace"] = namespace
    drill = RollbackDrill(manifest, api=api)
    try:
        drill.create()
    except kr8s.ServerError as error:
        print(f"error: the API server refused the drill: {error}", file=sys.stderr)
        return 1
    print(f"rollbackdrill.modelcanary.io/{drill.name} created ({args.mode})")
    return 0
