"""The replay-proxy addon, as mitmdump loads it (by file path); ``ssevcr replay --proxy`` runs
it. The addons are :mod:`ssevcr.mitm.replay_proxy`'s.
"""

import _ssevcr_import  # noqa: F401  (first: makes ``ssevcr`` importable)

from ssevcr.mitm.replay_proxy import addons

__all__ = ["addons"]
