"""What one sub-command of ``python -m benchmark`` is: its name, its arguments and its handler."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A sub-command: ``add_arguments`` declares its arguments on its own parser, ``handle`` runs it on the
    parsed arguments and returns the exit code (the errors it raises are mapped to exit codes by
    :func:`benchmark.cli.main`). Each module of :mod:`benchmark.cli` defines its commands this way."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handle: Callable[[argparse.Namespace], int]

    def register(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        """Add this command's parser, with its arguments, to ``subparsers``."""
        parser = subparsers.add_parser(self.name, help=self.help)
        self.add_arguments(parser)
        return parser
