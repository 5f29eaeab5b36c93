"""The recording addon, as mitmdump loads it (by file path)::

    mitmdump -s .../ssevcr/mitm/scripts/record.py --set ssevcr_cassette=out.msgpack

``ssevcr record`` runs exactly this. The addons are :mod:`ssevcr.mitm.recorder`'s.
"""

import _ssevcr_import  # noqa: F401  (first: makes ``ssevcr`` importable)

from ssevcr.mitm.recorder import addons

__all__ = ["addons"]
