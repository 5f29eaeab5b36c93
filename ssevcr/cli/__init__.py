"""The ``ssevcr`` command line (click). Each command lives in its own module and is imported only
when it runs, so ``ssevcr show`` never pays for mitmproxy or httpx imports, and ``ssevcr --help``
imports none of them (the one-line help of each command is in :data:`COMMANDS`; a test checks
that it is the command's own).

Errors: every :class:`~ssevcr._errors.SsevcrError` becomes one clean ``Error: ...`` line and exit
code 1; usage errors (unknown flag, bad value) exit 2 as usual in click. Never a traceback.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from typing import Any

import click

from .._errors import SsevcrError

COMMANDS: dict[str, tuple[str, str]] = {
    "record": (
        "record",
        "Record every HTTP exchange through a proxy into CASSETTE, with the arrival time of "
        "each chunk.",
    ),
    "replay": (
        "replay",
        "Serve CASSETTE... over HTTP with the recorded timing (or a changed one) and optional "
        "faults, byte-exact.",
    ),
    "show": ("review", "Show what a cassette holds: a table of interactions, or each event."),
    "export": ("review", "Write a cassette as its lossless JSON twin."),
    "import": (
        "review",
        "Read a JSON twin (checked; errors name the line and the field), a vcrpy cassette or a "
        "HAR file, and write the cassette.",
    ),
    "audit": ("review", "Look for credentials in cassettes."),
    "sweep": (
        "sweep",
        "Run -- CMD once clean and once per fault, and say which faults it mishandles.",
    ),
    "synth": (
        "synth",
        "Build a cassette from content, without a network: the stream a provider would send.",
    ),
}
"""Command name -> (module in ssevcr.cli that defines ``<name>_command``, what ``ssevcr --help``
says of it: the start of its own help, as a test checks)."""


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from :data:`COMMANDS`, without importing any command."""
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx) if name in COMMANDS]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        module_name = COMMANDS.get(cmd_name, ("", ""))[0]
        if not module_name:
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


def not_an_input(output: str | None, inputs: Iterable[str | None], option: str = "-o") -> None:
    """Refuse, before anything is read or written, an output file that is one of the files the
    command reads: the same name, or a symlink or hard link to it (the same device and inode).
    Writing it would replace (or truncate) its own input; nothing is ever written in place."""
    if not output or output == "-":
        return
    try:
        out = os.stat(output)
    except OSError:
        return  # not there yet (or out of reach: writing it says why)
    for path in inputs:
        if not path or path == "-":
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            same = "" if os.path.abspath(output) == os.path.abspath(path) else f" ({path!r})"
            raise click.ClickException(
                f"{option} {output!r} is the file this command reads{same}: writing it would "
                "replace its input; nothing was written (give another file)"
            )


def write_text(path: str, text: str) -> None:
    """Write a report, picture or twin a command was asked for (atomically, making its folder);
    a failure is one ``Error:`` line naming the file."""
    from .. import _store

    try:
        _store.write_atomic(path, text.encode("utf-8"), fsync=False)
    except OSError as e:  # a file where its folder should be: "'afile' is not a folder"
        raise click.ClickException(f"cannot write {path!r}: {e.strerror or e}") from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ssevcr", prog_name="ssevcr")
def main() -> None:
    """A VCR for Server-Sent Events: record real streams with their timing, replay them
    byte-exact, and break them on purpose."""
