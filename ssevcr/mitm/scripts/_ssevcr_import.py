"""Makes the ssevcr package that holds this folder importable as ``ssevcr`` in the interpreter
that runs mitmdump, which may be another Python environment than ssevcr's. The addon files next
to it import it first (and the launcher loads it before any addon file); it is the only place
that touches ``sys.path``.

mitmproxy's script loader puts a script's folder first on ``sys.path`` (and leaves it there):
that is how this file is found. It takes the folder out again, so nothing here shadows a
top-level module. Then, unless ``import ssevcr`` already finds this very package, it loads this
package under the name ``ssevcr`` from its own folder: never a site-packages directory, never
another ssevcr installed in mitmproxy's environment.

The recorder also needs ssevcr's dependencies ``msgpack`` (which mitmproxy brought along up to
12.2 and no longer does from 12.3 on) and ``filelock`` (the store's locks; mitmproxy never
depended on it). Those mitmdump's environment lacks are lent by the launcher: it names each
package folder in ``SSEVCR_LEND_<NAME>`` (see :data:`ssevcr.mitm.protocol.LENT`), and only
that folder is loaded. A compiled part built for the launcher's Python is not loaded by another
Python: msgpack then runs its pure-Python implementation.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_HERE = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.dirname(_HERE))
"""The ssevcr package folder this file belongs to."""


def _load_from(name: str, folder: str) -> None:
    """Import the package in ``folder`` as ``name`` (and its submodules from there)."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name} from {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _found(name: str) -> str | None:
    """The folder ``import name`` would load (without importing it), or None."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return os.path.realpath(os.path.dirname(getattr(loaded, "__file__", "") or ""))
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return None
    return os.path.realpath(os.path.dirname(spec.origin))


def _load() -> None:
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]
    where = _found("ssevcr")
    if where != PACKAGE:
        if "ssevcr" in sys.modules:
            raise ImportError(f"another ssevcr ({where}) is imported here; expected {PACKAGE}")
        _load_from("ssevcr", PACKAGE)
    from ssevcr.mitm.protocol import LENT, lent_variable

    for name in LENT:
        folder = os.environ.get(lent_variable(name))
        if folder and _found(name) is None:
            _load_from(name, os.path.realpath(folder))


_load()
