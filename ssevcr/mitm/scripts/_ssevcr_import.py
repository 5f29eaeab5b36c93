"""Makes the ssevcr package that holds this folder importable as ``ssevcr`` in the interpreter
that runs mitmdump, which may be another Python environment than ssevcr's. The addon files next
to it import it first; it is the only place that touches ``sys.path``.

mitmproxy's script loader puts a script's folder first on ``sys.path`` (and leaves it there):
that is how this file is found. It takes the folder out again, so nothing here shadows a
top-level module. Then, unless ``import ssevcr`` already finds this very package, it loads this
package under the name ``ssevcr`` from its own folder: never a site-packages directory, never
another ssevcr installed in mitmproxy's environment.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_HERE = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.dirname(_HERE))
"""The ssevcr package folder this file belongs to."""


def _load() -> None:
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]
    loaded = sys.modules.get("ssevcr")
    if loaded is not None:
        where = os.path.realpath(os.path.dirname(getattr(loaded, "__file__", "") or ""))
        if where != PACKAGE:
            raise ImportError(f"another ssevcr ({where}) is imported here; expected {PACKAGE}")
        return
    spec = importlib.util.find_spec("ssevcr")
    if spec and spec.origin and os.path.realpath(os.path.dirname(spec.origin)) == PACKAGE:
        return  # plain imports find it
    spec = importlib.util.spec_from_file_location(
        "ssevcr", os.path.join(PACKAGE, "__init__.py"), submodule_search_locations=[PACKAGE]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ssevcr"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["ssevcr"]
        raise


_load()
