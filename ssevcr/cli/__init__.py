"""The ``ssevcr`` command line (click). Each command lives in its own module and is imported only
when it runs, so ``ssevcr show`` never pays for mitmproxy or httpx imports.

Errors: every :class:`~ssevcr._errors.SsevcrError` becomes one clean ``Error: ...`` line and exit
code 1; usage errors (unknown flag, bad value) exit 2 as usual in click. Never a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from .._errors import SsevcrError

# command name -> module in ssevcr.cli that defines a click command of that name
COMMANDS: dict[str, str] = {
    "record": "record",
    "replay": "replay",
    "show": "review",
    "export": "review",
    "import": "review",
    "audit": "review",
    "synth": "synth",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(f".{module_name}", __name__)
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{module_name}":
                return None
            raise
        command = getattr(module, cmd_name.replace("-", "_") + "_command", None)
        return command if isinstance(command, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SsevcrError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ssevcr", prog_name="ssevcr")
def main() -> None:
    """A VCR for Server-Sent Events: record real streams with their timing, replay them
    byte-exact, and break them on purpose."""
