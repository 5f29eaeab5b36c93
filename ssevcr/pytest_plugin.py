"""pytest plugin (registered through the ``pytest11`` entry point): bind cassettes to tests.

    @pytest.mark.ssevcr                                     # cassettes/<module>/<test>.msgpack
    @pytest.mark.ssevcr("story", timing="scale:0.1", faults=["truncate:after=3,end=abort"])
    def test_story(ssevcr_cassette): ...

Marker keywords: ``timing``, ``max_gap``, ``faults``, ``seed``, ``match_on``, ``ignore_body_keys``,
``allow_repeats``, ``record``, ``redact_headers``, ``redact_query``, ``redact_body``,
``fail_on_unconsumed`` (the test fails when a replayed stream was neither read to the end nor
closed). A failing test's report has a section with the delivery journal of each play. A bare name
is a file in the test module's cassette folder (``.msgpack`` added); a name with a slash is a path
relative to the rootdir.

Record mode and timing, highest first: ``--ssevcr-record`` / ``--ssevcr-timing`` on the command
line, then ``SSEVCR_RECORD`` / ``SSEVCR_TIMING`` in the environment, then the marker, then the
``ssevcr_config`` fixture, then the defaults (``none``, ``original``).

Every knob is a fixture a conftest can override: ``ssevcr_record_mode``, ``ssevcr_timing``,
``ssevcr_cassette_dir``, ``ssevcr_cassette_name``, ``ssevcr_cassette_path``, ``ssevcr_config``
(the dir and the config are module-scoped, computed once per module; an override may have any
scope).
A request with no recorded answer fails the test with the explanation — also when the client
swallowed or wrapped the NoMatchError (SDK retries) — without a traceback. ssevcr itself is
imported only by the fixtures, so the plugin costs nothing in sessions that do not use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._intercept import ActiveCassette, Options
    from ._server_thread import ServerThread

__all__ = [
    "ssevcr_cassette",
    "ssevcr_cassette_dir",
    "ssevcr_cassette_name",
    "ssevcr_cassette_path",
    "ssevcr_config",
    "ssevcr_record_mode",
    "ssevcr_server",
    "ssevcr_timing",
]

_RUN = pytest.StashKey[
    tuple[str, "str | None"]
]()  # (run id, folder of ``all`` claims shared with xdist workers)
_CLAIMS_MADE = pytest.StashKey[str]()  # the claims folder this (controlling) process created
_ACTIVE = pytest.StashKey["ActiveCassette"]()
_REPORTED = pytest.StashKey[int]()
_OWN_KEYWORDS = ("record", "timing")  # resolved by their own fixtures (CLI > env > marker)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ssevcr", "ssevcr: replay and record SSE streams")
    group.addoption(
        "--ssevcr-record",
        dest="ssevcr_record",
        default=None,
        metavar="MODE",
        help="none (replay only; default), once, new_episodes or all. Overrides SSEVCR_RECORD and markers.",
    )
    group.addoption(
        "--ssevcr-timing",
        dest="ssevcr_timing",
        default=None,
        metavar="TIMING",
        help="original, instant, scale:F or fixed:DUR for every test. Overrides SSEVCR_TIMING and markers.",
    )


def pytest_configure(config: pytest.Config) -> None:
    # one run for record mode ``all`` (the first save of a cassette replaces it, later ones
    # append): xdist workers share the controller's run id and claims folder
    workerinput = getattr(config, "workerinput", None)
    if workerinput and "ssevcr_run" in workerinput:
        config.stash[_RUN] = (workerinput["ssevcr_run"], workerinput["ssevcr_claims"])
    else:
        config.stash[_RUN] = (os.urandom(8).hex(), None)
    config.addinivalue_line(
        "markers",
        "ssevcr(name_or_path=None, *, timing=None, faults=(), seed=0, match_on=None, ignore_body_keys=(), "
        "allow_repeats=False): replay (or record) a cassette for every httpx/httpx2 client in the test",
    )
    for value, source in (
        (config.getoption("ssevcr_record"), "--ssevcr-record"),
        (os.environ.get("SSEVCR_RECORD"), "SSEVCR_RECORD"),
    ):
        if value:
            from ._errors import ConfigError
            from ._intercept import check_record_mode

            try:
                check_record_mode(value)
            except ConfigError as e:
                raise pytest.UsageError(f"{source}: {e}") from None
            break


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist (controller): hand each worker the run id and a claims folder."""
    config = node.config
    if _CLAIMS_MADE not in config.stash:
        import tempfile

        config.stash[_CLAIMS_MADE] = tempfile.mkdtemp(prefix="ssevcr-run-")
    node.workerinput["ssevcr_run"] = config.stash[_RUN][0]
    node.workerinput["ssevcr_claims"] = config.stash[_CLAIMS_MADE]


def pytest_unconfigure(config: pytest.Config) -> None:
    claims = config.stash.get(_CLAIMS_MADE, None)
    if claims:
        import shutil

        shutil.rmtree(claims, ignore_errors=True)


_MARK = pytest.StashKey[pytest.Mark | None]()


def _marker(request: pytest.FixtureRequest) -> pytest.Mark | None:
    """The test's ``ssevcr`` marker (looked up once per test: every knob asks)."""
    stash = request.node.stash
    if _MARK not in stash:
        stash[_MARK] = request.node.get_closest_marker("ssevcr")
    mark: pytest.Mark | None = stash[_MARK]
    return mark


def _first(
    request: pytest.FixtureRequest,
    option: str,
    env: str,
    keyword: str,
    config: dict[str, Any],
    default: str,
) -> str:
    value = request.config.getoption(option) or os.environ.get(env)
    if value:
        return str(value)
    marker = _marker(request)
    if marker is not None and marker.kwargs.get(keyword) is not None:
        return str(marker.kwargs[keyword])
    return str(config.get(keyword) or default)


# -- overridable knobs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssevcr_config() -> dict[str, Any]:
    """Defaults for every ``use_cassette`` option in its scope (override in a conftest), e.g.
    ``{"timing": "instant", "redact_headers": ["x-team-token"]}``. Markers win over it."""
    return {}


@pytest.fixture
def ssevcr_record_mode(request: pytest.FixtureRequest, ssevcr_config: dict[str, Any]) -> str:
    """--ssevcr-record > SSEVCR_RECORD > marker ``record=`` > ssevcr_config > ``none``."""
    return _first(request, "ssevcr_record", "SSEVCR_RECORD", "record", ssevcr_config, "none")


@pytest.fixture
def ssevcr_timing(request: pytest.FixtureRequest, ssevcr_config: dict[str, Any]) -> str:
    """--ssevcr-timing > SSEVCR_TIMING > marker ``timing=`` > ssevcr_config > ``original``."""
    return _first(request, "ssevcr_timing", "SSEVCR_TIMING", "timing", ssevcr_config, "original")


@pytest.fixture(scope="module")
def ssevcr_cassette_dir(request: pytest.FixtureRequest) -> Path:
    """``<rootdir>/cassettes/<test module name>``."""
    module = Path(request.node.path).stem
    return Path(request.config.rootpath) / "cassettes" / module


@pytest.fixture
def ssevcr_cassette_name(request: pytest.FixtureRequest) -> str:
    """The test's name (``Class.test[param]`` for methods), made safe as a file name."""
    node: Any = request.node
    name = node.name if node.cls is None else f"{node.cls.__name__}.{node.name}"
    return re.sub(r"[^\w.\[\]=,+-]", "-", name)


@pytest.fixture
def ssevcr_cassette_path(
    request: pytest.FixtureRequest, ssevcr_cassette_dir: Path, ssevcr_cassette_name: str
) -> Path:
    """The marker's first argument (a bare name in the module's folder, or a path with a slash
    relative to the rootdir), else ``<cassette dir>/<test name>.msgpack``."""
    marker = _marker(request)
    given = marker.args[0] if marker is not None and marker.args else None
    if given is None:
        return ssevcr_cassette_dir / f"{ssevcr_cassette_name}.msgpack"
    if not isinstance(given, str | os.PathLike) or not isinstance(os.fspath(given), str):
        raise pytest.fail.Exception(
            f"the ssevcr marker: a cassette is a file name or path, got {given!r}", pytrace=False
        )
    text = os.fspath(given)
    if "/" in text or os.sep in text:
        return Path(request.config.rootpath, text)
    return ssevcr_cassette_dir / (
        text if text.endswith((".msgpack", ".json")) else f"{text}.msgpack"
    )


# -- the cassette --------------------------------------------------------------------------------


def _options(
    request: pytest.FixtureRequest,
    path: Path,
    record: str,
    timing: str,
    config: dict[str, Any],
) -> Options:
    """The marker's options over ``ssevcr_config``'s, every keyword checked by name."""
    from ._errors import ConfigError
    from ._intercept import OPTION_NAMES, Options

    marker = _marker(request)
    given = {"ssevcr_config": config, "the ssevcr marker": marker.kwargs if marker else {}}
    for source, kwargs in given.items():
        unknown = [k for k in kwargs if k not in OPTION_NAMES]
        if unknown:
            raise ConfigError(
                f"{source}: unknown keyword {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(OPTION_NAMES)}"
            )
    if marker is not None and len(marker.args) > 1:
        raise ConfigError(
            f"the ssevcr marker takes one cassette name or path, got {len(marker.args)}: "
            f"{marker.args!r}"
        )
    kwargs = {**config, **(marker.kwargs if marker is not None else {})}
    for key in _OWN_KEYWORDS:
        kwargs.pop(key, None)
    return Options.parse(path, record=record, timing=timing, **kwargs)


@pytest.fixture
def ssevcr_cassette(
    request: pytest.FixtureRequest,
    ssevcr_cassette_path: Path,
    ssevcr_record_mode: str,
    ssevcr_timing: str,
    ssevcr_config: dict[str, Any],
) -> Iterator[ActiveCassette]:
    """The cassette in use for this test: ``.cassette`` (as loaded), ``.plays`` (every request
    answered, replayed or recorded), ``.fired`` (fault specs that changed a response),
    ``.misses``, ``.unused()``, ``.recorded``. While it is active every httpx and httpx2 client
    replays from it (or records into it); what was recorded is saved when the test returns (a
    failed save fails the test) and when it ends otherwise. When it only replays, the SDKs' API
    key variables that are unset get stand-ins (as ``ssevcr replay -- CMD`` does), put back
    after the test."""
    from ._errors import SsevcrError
    from ._intercept import CassetteUse
    from ._providers import dummy_keys
    from ._store import begin_run

    begin_run(*request.config.stash[_RUN])
    try:
        options = _options(
            request, ssevcr_cassette_path, ssevcr_record_mode, ssevcr_timing, ssevcr_config
        )
        use = CassetteUse(options, process_wide=True)  # one test at a time: every thread
        active = use.__enter__()
    except SsevcrError as e:  # (from None: pytest would print the message again, chained)
        raise pytest.fail.Exception(str(e), pytrace=False) from None
    request.node.stash[_ACTIVE] = active
    with pytest.MonkeyPatch.context() as env:
        if active.replays_only:
            for name, value in dummy_keys(os.environ).items():
                env.setenv(name, value)
        try:
            yield active
        finally:
            del request.node.stash[_ACTIVE]
            try:
                use.__exit__(None, None, None)
            except SsevcrError as e:
                if not active.save_failed:
                    raise pytest.fail.Exception(
                        f"ssevcr: saving the cassette failed: {e}", pytrace=False
                    ) from None
    _fail_on_misses(request.node, active, None)  # misses outside the test call (fixtures)


@pytest.fixture(autouse=True)
def _ssevcr_marker(request: pytest.FixtureRequest) -> None:
    """Activate the cassette for tests with the ``ssevcr`` marker (before their other fixtures)."""
    if _marker(request) is not None:
        request.getfixturevalue("ssevcr_cassette")


@pytest.fixture
def ssevcr_server(ssevcr_cassette: ActiveCassette) -> Iterator[ServerThread]:
    """The test's cassette served over a real socket on 127.0.0.1 (``.url``) for clients that
    are not httpx (aiohttp, requests, a subprocess, a browser). It shares the player with
    ``ssevcr_cassette`` (plays, misses and faults are counted once); it replays only."""
    from ._server_thread import ServerThread

    server = ServerThread(ssevcr_cassette.player, log=lambda _line: None).start()
    ssevcr_cassette.passthrough.add(server.server.authority)
    try:
        yield server
    finally:
        server.close()


# -- misses fail the test, whatever the client did with the exception ---------------------------


def _fail_on_misses(
    item: pytest.Item, active: ActiveCassette | None, raised: BaseException | None
) -> None:
    """Fail with the explanation of every miss not reported yet (and nothing else: no traceback,
    no chained exception)."""
    from ._errors import NoMatchError

    if active is None:
        return
    misses = len(active.misses)
    reported = item.stash.get(_REPORTED, 0)
    if misses <= reported:
        return
    item.stash[_REPORTED] = misses
    lines = [active.explain(reported)]
    if raised is not None and not isinstance(raised, NoMatchError | pytest.fail.Exception):
        first = (str(raised).splitlines() or [""])[0][:200]
        lines.append(f"(the test raised {type(raised).__name__}: {first})")
    raise pytest.fail.Exception("\n".join(lines), pytrace=False) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    active = item.stash.get(_ACTIVE, None)
    try:
        result = yield
    except BaseException as raised:
        _fail_on_misses(item, active, raised)
        raise
    _fail_on_misses(item, active, None)
    if active is not None:
        _save(active)
        _fail_on_unconsumed(active)
    return result


def _fail_on_unconsumed(active: ActiveCassette) -> None:
    if active.options.fail_on_unconsumed and not active.checked:
        active.checked = True
        problem = active.unconsumed_problem()
        if problem:
            raise pytest.fail.Exception(problem, pytrace=False) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report shows what each replayed play delivered (the journal)."""
    report = yield
    active = item.stash.get(_ACTIVE, None)
    if active is not None and report.failed and call.when == "call":
        lines = [d.describe() for d in active.journal]
        if lines:
            report.sections.append(("ssevcr journal", "\n".join(lines)))
    return report


def _save(active: ActiveCassette) -> None:
    """Save what the test recorded as soon as it returns, while an async test's event loop is
    still there for the recorders of faulted streams to finish on; a save that fails fails the
    test (streams still open are saved when the fixture ends)."""
    from ._errors import SsevcrError

    try:
        active.save(final=False)
    except SsevcrError as e:
        active.save_failed = True  # reported here: the fixture's last save does not say it twice
        raise pytest.fail.Exception(
            f"ssevcr: saving the cassette failed: {e}", pytrace=False
        ) from None
