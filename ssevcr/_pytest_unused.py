"""``pytest --ssevcr-unused``: the cassettes and the interactions no test of the session played
(talkback's orphans), reported at the end in a section of their own.

The rule, printed with the report:

- **folders checked**: those holding a cassette of a collected test (its default folder
  ``cassettes/<module>/`` or the folder of a cassette named in its marker) and of every cassette
  a test opened. Their ``.msgpack`` and ``.json`` files are checked; other folders are not, so
  running one module does not call the others' cassettes unused.
- **an unused cassette**: a file there that no test opened.
- **an unused interaction**: one of a cassette a test opened that no test played (a test that
  recorded a cassette whole, ``all``, used all of it; what ``new_episodes`` appended is used).
- **not judged**: the cassettes of a collected test that did not open them (deselected with
  ``-k``/``-m``, skipped, failed before its cassette was opened, or stopped by ``-x``) are
  neither unused nor checked for unused interactions; the report counts those tests and names
  their cassettes. Their paths are the marker's names or the default path, as collection sees
  them (a conftest's override of ``ssevcr_cassette_dir``/``ssevcr_cassette_path`` is seen only
  when the test runs).

With pytest-xdist each worker sends what its tests opened and played to the controller
(``workeroutput``, read in ``pytest_testnodedown``), which reports once for the whole session.

The exit code is unchanged, unless ``--ssevcr-strict`` is given too: then a session that found
unused cassettes or interactions exits 1 (``TESTS_FAILED``), once every test passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._intercept import ActiveCassette

__all__ = ["Unused"]

_KEY = "ssevcr_unused"  # in workeroutput
_SHOWN = 10  # interactions listed per cassette


class Unused:
    """Registered in every process of a session with ``--ssevcr-unused``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.expected: dict[str, list[str]] = {}  # collected test -> its cassettes (collection)
        self.opened: set[str] = set()  # tests that opened their cassettes
        # cassette -> {"count": interactions when opened, "played": [places], "whole": bool}
        self.files: dict[str, dict[str, Any]] = {}
        self.lines: list[str] = []
        self.found = 0

    # -- every process -------------------------------------------------------------------------

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        from .pytest_plugin import _merged

        marker = _merged(item)
        if marker is None:
            return
        try:
            paths = _collected_paths(item, marker)
        except pytest.fail.Exception:  # a bad name: the test itself says so when it runs
            return
        self.expected[item.nodeid] = [_key(p) for p in paths]

    def note(self, nodeid: str, active: ActiveCassette) -> None:
        """What one test's cassettes were: opened, and which interactions it played."""
        self.opened.add(nodeid)
        whole = active.mode == "record"  # recorded whole: every interaction is this test's
        counts = [len(active.cassette), *(len(c) for _, c in active.more)]
        for n, (path, count) in enumerate(zip(active.paths, counts, strict=True)):
            entry = self.files.setdefault(_key(path), {"count": 0, "played": [], "whole": False})
            entry["count"] = max(entry["count"], count)
            entry["whole"] = entry["whole"] or (whole and n == 0)
        played: dict[str, set[int]] = {}
        for name, place, plays, _ in active.player.usage():
            if plays:
                played.setdefault(_key(Path(name)), set()).add(place)
        for key, places in played.items():
            entry = self.files[key]
            entry["played"] = sorted(set(entry["played"]) | places)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller reports
            workeroutput[_KEY] = {
                "expected": self.expected,
                "opened": sorted(self.opened),
                "files": self.files,
            }
            return
        self.lines, self.found = self._report()
        if (
            self.found
            and self.config.getoption("ssevcr_strict")
            and session.exitstatus == pytest.ExitCode.OK
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    # -- the controller ------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get(_KEY)
        if not data:
            return
        self.expected.update(data["expected"])
        self.opened.update(data["opened"])
        for key, theirs in data["files"].items():
            entry = self.files.setdefault(key, {"count": 0, "played": [], "whole": False})
            entry["count"] = max(entry["count"], theirs["count"])
            entry["whole"] = entry["whole"] or theirs["whole"]
            entry["played"] = sorted(set(entry["played"]) | set(theirs["played"]))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput") or not self.lines:
            return
        terminalreporter.write_sep("=", "ssevcr unused")
        for line in self.lines:
            terminalreporter.write_line(line)

    def _report(self) -> tuple[list[str], int]:
        root = Path(self.config.rootpath)
        not_run = sorted(t for t in self.expected if t not in self.opened)
        unjudged = {p for t in not_run for p in self.expected[t]}
        folders = {Path(p).parent for ps in self.expected.values() for p in ps}
        folders |= {Path(p).parent for p in self.files}
        on_disk = sorted(
            _key(f)
            for d in folders
            if d.is_dir()
            for f in d.iterdir()
            if f.suffix in (".msgpack", ".json") and f.is_file()
        )
        orphans = [f for f in on_disk if f not in self.files and f not in unjudged]
        lines = [
            "checked: the .msgpack/.json files of the folders holding a collected test's cassettes",
            "unused: a file no test opened; an interaction of an opened file no test played",
            "not judged: the cassettes of tests that did not open them (deselected, skipped, "
            "failed before)",
        ]
        lines += [f"unused cassette: {_shown(f, root)}" for f in orphans]
        found = len(orphans)
        for key in sorted(self.files):
            entry = self.files[key]
            if entry["whole"] or key in unjudged:
                continue
            left = [n for n in range(entry["count"]) if n not in set(entry["played"])]
            if not left:
                continue
            found += len(left)
            lines.append(
                f"unused interactions: {len(left)} of {entry['count']} in {_shown(key, root)}:"
            )
            lines += _described(key, left)
        if not_run:
            shown = sorted(unjudged)
            lines.append(
                f"not judged: {len(not_run)} test(s) with the ssevcr marker did not open their "
                f"cassettes (deselected, skipped or failed before): "
                + ", ".join(_shown(p, root) for p in shown[:_SHOWN])
                + (f" and {len(shown) - _SHOWN} more" if len(shown) > _SHOWN else "")
            )
        if not found:
            lines.append(f"every cassette and interaction was played ({len(self.files)} cassettes)")
        return lines, found


def _key(path: Path) -> str:
    return str(path.resolve())


def _shown(key: str, root: Path) -> str:
    path = Path(key)
    return str(path.relative_to(root)) if path.is_relative_to(root) else key


def _described(key: str, places: list[int]) -> list[str]:
    """``#N METHOD URL`` of the first unused interactions (the file read again)."""
    from . import _store
    from ._errors import SsevcrError
    from ._secrets import mask_url, printable

    try:
        interactions = _store.load(Path(key)).interactions
    except SsevcrError as e:
        return [f"  (cannot read it again: {e})"]
    out = [
        f"  #{n + 1} {printable(interactions[n].request.method)} "
        f"{printable(mask_url(interactions[n].request.url))}"
        for n in places[:_SHOWN]
        if n < len(interactions)
    ]
    if len(places) > _SHOWN:
        out.append(f"  ... and {len(places) - _SHOWN} more")
    return out


def _collected_paths(item: pytest.Item, marker: pytest.Mark) -> list[Path]:
    """A collected test's cassettes as collection sees them (see the module)."""
    from .pytest_plugin import _case, _default_name, _named_path

    root = Path(item.config.rootpath)
    folder = root / "cassettes" / Path(item.path).stem
    if marker.args:
        return [_named_path(a, root, folder) for a in marker.args]
    name = item.name
    case = _case(item)
    if case is not None:
        from ._pytest_sweep import strip_case

        name = strip_case(name, case)
    return [folder / f"{_default_name(item, name)}.msgpack"]
