"""The public API: what ``import ssevcr`` offers is exactly ``__all__``, each name resolves, and
importing it stays light (no mitmproxy, httpx, click or asyncio server)."""

from __future__ import annotations

import subprocess
import sys

import ssevcr

PUBLIC = [
    "Cassette",
    "CassetteError",
    "Chunk",
    "Comment",
    "ConfigError",
    "ControlClient",
    "ControlError",
    "End",
    "Event",
    "ExpiredCassetteWarning",
    "Interaction",
    "NetworkBlockedError",
    "NoMatchError",
    "Outcome",
    "Player",
    "ReplayServer",
    "ReplayTransport",
    "Request",
    "Response",
    "SSEParser",
    "ServerThread",
    "SsevcrError",
    "UnappliedFaultWarning",
    "__version__",
    "load",
    "parse_sse",
    "save",
    "use_cassette",
]


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert sorted(ssevcr.__all__) == sorted(PUBLIC)
    assert dir(ssevcr) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(ssevcr, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        ssevcr.nothing_here  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as e:
        assert "nothing_here" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_import_ssevcr_is_light() -> None:
    code = (
        "import sys, ssevcr; heavy = [m for m in ('mitmproxy', 'httpx', 'httpx2', 'click', 'h11',"
        " 'asyncio', 'ssevcr._server') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_is_typed() -> None:
    from importlib.resources import files

    assert files("ssevcr").joinpath("py.typed").is_file()
