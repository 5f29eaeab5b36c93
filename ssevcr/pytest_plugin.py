"""pytest plugin (registered through the ``pytest11`` entry point)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ssevcr(cassette=None, *, timing=None, faults=(), seed=0): replay (or record) a cassette"
    )
