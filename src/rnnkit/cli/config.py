"""``rnnkit config``: list recipes and tasks, show a resolved config."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import make_parser

EPILOG = """\
examples:
  rnnkit config list
  rnnkit config show sentiment                       # the full default config, as YAML
  rnnkit config show sentiment --set train.lr=1e-3   # with overrides applied (and checked)
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(subparsers, "config", help="list recipes, show a full config", description=__doc__, epilog=EPILOG)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="recipes and task kinds")
    show = sub.add_parser("show", help="print the resolved config of a recipe or task as YAML")
    show.add_argument("target", help="a recipe (e.g. sentiment) or a task kind (e.g. text-classification)")
    show.add_argument("--config", type=Path, default=None, help="YAML file merged over the recipe's defaults")
    show.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="dotted overrides (repeatable: all apply)",
    )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rnnkit.config import config_yaml, load_yaml
    from rnnkit.tasks import TASKS
    from rnnkit.tasks.runner import recipes, resolve_config

    if args.action == "list":
        print("recipes:")
        for name, path in sorted(recipes().items()):
            data = load_yaml(path)
            print(f"  {name:<20} {data.get('task', '?'):<22} {data.get('description', '')}")
        print("tasks:")
        for name in sorted(TASKS):
            print(f"  {name}")
        return 0
    _, config = resolve_config(args.target, args.config, args.overrides)
    print(config_yaml(config), end="")
    return 0
