"""Makes the ssevcr package that holds this folder importable as ``ssevcr`` in the interpreter
that runs mitmdump, which may be another Python environment than ssevcr's. The addon files next
to it import it first; it is the only place that touches ``sys.path``.

mitmproxy's script loader puts a script's folder first on ``sys.path`` (and leaves it there):
that is how this file is found. It takes the folder out again, so nothing here shadows a
top-level module. Then, unless ``import ssevcr`` already finds this very package, it loads this
package under the name ``ssevcr`` from its own folder: never a site-packages directory, never
another ssevcr installed in mitmproxy's environment. The same for ``filelock`` (the store's
locks; mitmproxy does not depend on it) when mitmproxy's environment lacks it: from the package
folder ``ssevcr record`` names in ``SSEVCR_FILELOCK``, and only that folder.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_HERE = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.dirname(_HERE))
"""The ssevcr package folder this file belongs to."""


def _load_from(name: str, folder: str) -> None:
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _load_filelock() -> None:
    folder = os.environ.get("SSEVCR_FILELOCK")
    if folder and "filelock" not in sys.modules and importlib.util.find_spec("filelock") is None:
        _load_from("filelock", os.path.realpath(folder))


def _load() -> None:
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]
    _load_filelock()
    loaded = sys.modules.get("ssevcr")
    if loaded is not None:
        where = os.path.realpath(os.path.dirname(getattr(loaded, "__file__", "") or ""))
        if where != PACKAGE:
            raise ImportError(f"another ssevcr ({where}) is imported here; expected {PACKAGE}")
        return
    spec = importlib.util.find_spec("ssevcr")
    if spec and spec.origin and os.path.realpath(os.path.dirname(spec.origin)) == PACKAGE:
        return  # plain imports find it
    _load_from("ssevcr", PACKAGE)


_load()
