"""Shared test setup. Helpers for servers live in their own modules (tests/upstream.py, ...)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import CaptureServer
from upstream import TLSFiles, Upstream, make_tls_files

from ssevcr._errors import SsevcrError
from ssevcr.mitm.driver import locate_mitmdump

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


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA and a certificate for 127.0.0.1 (tests/upstream.py), one set a module."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def upstream_tls(tls_files: TLSFiles) -> Iterator[Upstream]:
    """A local HTTPS upstream with ``tls_files``' certificate, shared by a module's tests."""
    with Upstream(tls=tls_files) as server:
        yield server


@pytest.fixture(scope="module")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mitmproxy's configuration directory (its CA), one a module; every test that runs mitmdump
    through it skips when there is none."""
    try:
        locate_mitmdump()
    except SsevcrError:  # pragma: no cover - bootstrap creates .venv-mitmproxy
        pytest.skip("needs mitmdump (bootstrap creates .venv-mitmproxy, or set SSEVCR_MITMDUMP)")
    return tmp_path_factory.mktemp("mitmconf")


@pytest.fixture
def pt(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An inner pytest project: pytest-asyncio in auto mode, no ssevcr environment overrides.
    An inner run in this process may find ssevcr imported without pytest's assertion rewriting
    (after another test's ``pytester`` restored ``sys.modules``), and pytest warns about that
    module state of the outer process, which is not the inner run's output."""
    pytester.makeini("""
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        filterwarnings = ignore::pytest.PytestAssertRewriteWarning
    """)
    for var in ("SSEVCR_RECORD", "SSEVCR_TIMING"):
        monkeypatch.delenv(var, raising=False)
    return pytester
