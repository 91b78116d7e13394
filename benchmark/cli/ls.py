"""``ls``: list the registered methods, dbs or backbones."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from benchmark.cli.command import Command


def add_arguments(ls: argparse.ArgumentParser) -> None:
    """What to list, and (backbones) a glob over timm's models."""
    ls.add_argument("what", choices=["methods", "dbs", "backbones"])
    ls.add_argument("--pattern", help="backbones: list every timm model matching this glob, e.g. 'resnet*'")


def handle(args: argparse.Namespace) -> int:
    """Print name, source and description of each entry."""
    if args.what == "backbones":
        from benchmark.backbones import BUILTIN_BACKBONES, list_backbones

        rows = [[name, "builtin" if name in BUILTIN_BACKBONES else "timm", desc] for name, desc in list_backbones(args.pattern)]
        if not args.pattern:
            rows.append(["<any timm model>", "timm", "use --pattern GLOB to list timm's models, e.g. --pattern 'resnet*'"])
    else:
        if args.what == "methods":
            from methods import METHODS as registry
        else:
            from datasets import DBS as registry
        rows = [[e.name, e.source, e.description] for e in registry.entries()]
    print(tabulate(rows, headers=["name", "source", "description"], tablefmt="github"))
    return 0


COMMAND = Command("ls", "list methods, dbs or backbones", add_arguments, handle)
