"""Shared test setup. Helpers for servers live in their own modules (tests/upstream.py, ...)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import CaptureServer
from upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "cassettes" / "examples"

# Recording and --proxy replay need a mitmdump. SSEVCR_MITMDUMP, when set, chooses it. Else a
# mitmproxy importable here is used as ssevcr finds it (one Python >= 3.12 environment with
# mitmproxy 12, see .ci/mitmproxy12). Else, on Python 3.11, it lives in its own venv (mitmproxy
# 11.0.2 cannot share an environment with httpx2), which bootstrap creates.
_MITMDUMP = ROOT / ".venv-mitmproxy" / "bin" / "mitmdump"
if (
    "SSEVCR_MITMDUMP" not in os.environ
    and importlib.util.find_spec("mitmproxy") is None
    and _MITMDUMP.exists()
):
    os.environ["SSEVCR_MITMDUMP"] = str(_MITMDUMP)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A local upstream (tests/upstream.py) of one test's own (modules that share one server
    across their tests define their own ``upstream``)."""
    with Upstream() as server:
        yield server


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    """A listener that counts every connection offered to it (a replayed client must offer
    none)."""
    with CaptureServer() as server:
        yield server
