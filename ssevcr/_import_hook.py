"""Run a function when a package is imported: the client adapters patch httpx, aiohttp and urllib3
only if the code under test uses them, without importing them (hundreds of milliseconds) themselves.

    when_imported("aiohttp", patch)     # now, if aiohttp is imported; else right after its import
    forget("aiohttp", patch)            # no longer

    patches = Patches("aiohttp", lambda aiohttp: [(aiohttp.BaseConnector, "connect", wrap)])
    patches.install()                   # BaseConnector.connect = wrap(original), once imported
    patches.uninstall()                 # the original back (unless another tool patched over us)

A finder at the front of ``sys.meta_path`` (only while something waits) hands the import to the
other finders and wraps the loader it gets, so the package runs as usual and the callbacks run
after it. Nothing else about the import changes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["Patches", "forget", "when_imported"]

Callback = Callable[[ModuleType], None]
Wrap = Callable[[Any], Any]  # the original method -> ours

_waiting: dict[str, list[Callback]] = {}
_finding: set[str] = set()
_lock = threading.RLock()


def when_imported(name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once the top-level package ``name`` is imported: at once if it
    is, else when its import completes."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    with _lock:
        _waiting.setdefault(name, []).append(callback)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


def forget(name: str, callback: Callback) -> None:
    """Stop waiting for ``name`` with ``callback`` (nothing if it already ran)."""
    with _lock:
        callbacks = _waiting.get(name, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            _waiting.pop(name, None)
        if not _waiting and _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)


def _imported(module: ModuleType) -> None:
    with _lock:
        callbacks = _waiting.pop(module.__name__, [])
        if not _waiting and _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)
    for callback in callbacks:
        callback(module)


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _imported(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        with _lock:
            if fullname not in _waiting or fullname in _finding:
                return None
            _finding.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            with _lock:
                _finding.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _Loader(spec.loader)
        return spec


_FINDER = _Finder()


_wrappers: dict[tuple[Any, Wrap], Any] = {}  # ours, for each (original, wrap): made once


class Patches:
    """The methods one adapter replaces on a package's classes while cassettes are open:
    ``targets(package)`` names them as ``(class, attribute, wrap)``. ``install`` sets each to
    ``wrap(original)`` once the package is imported (at once if it is); ``uninstall`` stops
    waiting and puts back each original that nobody patched over since. A wrapper is made once
    per original (a test suite opens cassettes often)."""

    def __init__(
        self, package: str, targets: Callable[[ModuleType], Iterable[tuple[type, str, Wrap]]]
    ) -> None:
        self.package = package
        self.targets = targets
        self._done: list[tuple[type, str, Any, Any]] = []  # (class, attribute, original, ours)

    def install(self) -> None:
        when_imported(self.package, self._apply)

    def uninstall(self) -> None:
        forget(self.package, self._apply)
        while self._done:
            cls, attr, original, ours = self._done.pop()
            if cls.__dict__.get(attr) is ours:  # leave alone what another tool patched over us
                setattr(cls, attr, original)

    def _apply(self, module: ModuleType) -> None:
        if self._done:
            return
        for cls, attr, wrap in self.targets(module):
            original = cls.__dict__[attr]
            ours = _wrappers.get((original, wrap))
            if ours is None:
                ours = _wrappers[original, wrap] = wrap(original)
            setattr(cls, attr, ours)
            self._done.append((cls, attr, original, ours))
