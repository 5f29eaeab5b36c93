"""pytest plugin (registered through the ``pytest11`` entry point): bind cassettes to tests.

    @pytest.mark.ssevcr                                     # cassettes/<module>/<test>.msgpack
    @pytest.mark.ssevcr("story", timing="scale:0.1", faults=["truncate:after=3,end=abort"])
    def test_story(ssevcr_cassette): ...

Marker keywords: ``use_cassette``'s (``timing``, ``max_gap``, ``faults``, ``seed``, ``match_on``
(custom matchers too), ``ws_match`` (how a WebSocket client's messages are compared on
``ssevcr_server``), ``ignore_body_keys``, ``allow_repeats``, ``record``, ``redact_*``,
``allowed_hosts``, ``ignore_hosts``, ``ignore_localhost``, ``config``, ``fail_on_unconsumed``: the
test fails when a replayed stream was neither read to the end nor closed,
``before_record_request``/``before_record_response`` (vcrpy's hooks, :mod:`ssevcr._hooks`),
``max_age``/``on_expiry`` (:mod:`ssevcr._expiry`; ``--ssevcr-max-age``/``--ssevcr-on-expiry`` for
every test)) and the plugin's own: ``strict`` (fail on interactions never played;
``--ssevcr-strict`` for every test), ``sweep`` and ``sweep_stall`` (the fault sweep,
:mod:`ssevcr._pytest_sweep`), ``cors`` (``ssevcr_server`` answers preflights and lets pages read it:
``True`` for any origin, or a list of origins). A bare name is a file in the test module's cassette
folder (``.msgpack`` added); a name with a slash is a path relative to the rootdir.

Several cassettes: several names in a marker and/or several markers — the test's as written (top
to bottom), then its class's, then its module's — searched in that order for each request (the
first unplayed match wins); recording goes to the first, the others must exist and are only
read. Keywords of several markers merge, the first given winning. ``--ssevcr-unused`` reports
the cassettes and interactions no test played (:mod:`ssevcr._pytest_unused`).

A connection the network guard refused (``ssevcr._network``) fails the test that owns the
cassette, like a miss: at the end of its call, or at teardown for one made later (a background
thread); ``--ssevcr-allow-host HOST`` adds to every cassette's ``allowed_hosts``.

A failing test's report has a section with the delivery journal of each play.

Record mode and timing, highest first: ``--ssevcr-record`` / ``--ssevcr-timing`` on the command
line, then ``SSEVCR_RECORD`` / ``SSEVCR_TIMING`` in the environment, then the marker, then the
``ssevcr_config`` fixture, then the defaults (``none``, ``original``).

Every knob is a fixture a conftest, module or class can override, or a ``parametrize`` can
give: ``ssevcr_record_mode``, ``ssevcr_timing``, ``ssevcr_cassette_dir``,
``ssevcr_cassette_name``, ``ssevcr_cassette_path``, ``ssevcr_config`` (the dir and the config
are module-scoped fixtures; an override may have any scope). The cassette is active before the
test's function-scoped fixtures, autouse ones too, and after those of wider scopes.
A request with no recorded answer fails the test with the explanation — also when the client
swallowed or wrapped the NoMatchError (SDK retries) — without a traceback. ssevcr itself is
imported only by the fixtures, so the plugin costs nothing in sessions that do not use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterator
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
_REPORTED = pytest.StashKey[tuple[int, int]]()  # misses, refused connections reported
_OWN_KEYWORDS = ("record", "timing")  # resolved by their own fixtures (CLI > env > marker)
_PLUGIN_KEYWORDS = (
    "sweep",
    "sweep_stall",
    "strict",
    "cors",
)  # the plugin's own, not use_cassette's
_SWEEP = "ssevcr_fault"  # the argument a swept test is parametrized over
_PLAYS = pytest.StashKey[dict[str, Any]]()  # what a swept case's replay sent, and its setting
_STRICT_ALL = pytest.StashKey[bool]()  # --ssevcr-strict
_SESSION, _SWEEPING = "ssevcr-session", "ssevcr-sweeping"  # plugins registered when they serve


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ssevcr", "ssevcr: replay and record SSE streams")
    group.addoption(
        "--ssevcr-record",
        dest="ssevcr_record",
        default=None,
        metavar="MODE",
        help="none (replay only; default), once, new_episodes or all. Overrides SSEVCR_RECORD "
        "and markers.",
    )
    group.addoption(
        "--ssevcr-timing",
        dest="ssevcr_timing",
        default=None,
        metavar="TIMING",
        help="original, instant, scale:F or fixed:DUR for every test. Overrides SSEVCR_TIMING "
        "and markers.",
    )
    group.addoption(
        "--ssevcr-allow-host",
        dest="ssevcr_allow_hosts",
        action="append",
        default=[],
        metavar="HOST",
        help="While a cassette replays, also let connections to HOST through (a name, a glob "
        "such as *.example.com, an address or a network such as 10.0.0.0/8; repeatable), on "
        "top of each cassette's allowed_hosts.",
    )
    group.addoption(
        "--ssevcr-strict",
        dest="ssevcr_strict",
        action="store_true",
        default=False,
        help="Fail every test with an ssevcr marker whose cassette has interactions it never "
        "played (the marker's strict=True, for every test).",
    )
    group.addoption(
        "--ssevcr-unused",
        dest="ssevcr_unused",
        action="store_true",
        default=False,
        help="At the end, report the cassettes (in the folders of the collected tests' "
        "cassettes) and the interactions no test played; with --ssevcr-strict the session "
        "fails when there are any.",
    )
    group.addoption(
        "--ssevcr-max-age",
        dest="ssevcr_max_age",
        default=None,
        metavar="AGE",
        help="Interactions recorded longer ago than AGE (seconds, or 30d, 12h, 2w) are expired "
        "(for every test; the marker's max_age=).",
    )
    group.addoption(
        "--ssevcr-on-expiry",
        dest="ssevcr_on_expiry",
        default=None,
        choices=("warn", "fail", "rerecord"),
        help="What an expired cassette does: warn (default), fail the test, or rerecord it "
        "whole (record mode all). Overrides the marker's on_expiry=.",
    )
    group.addoption(
        "--ssevcr-sweep",
        dest="ssevcr_sweep",
        default=None,
        choices=("quick", "default", "full"),
        help="Run every test with an ssevcr marker once clean and once per fault of its "
        "cassettes' catalogue (quick, default or full). Overrides the marker's sweep=.",
    )
    group.addoption(
        "--ssevcr-sweep-stall",
        dest="ssevcr_sweep_stall",
        default=None,
        metavar="DUR",
        help="How long the sweep's long stalls last, past the client's timeout (default 30s; "
        "the short ones a tenth of it, at most 1s). Overrides the marker's sweep_stall=.",
    )
    group.addoption(
        "--ssevcr-sweep-report",
        dest="ssevcr_sweep_report",
        default=None,
        metavar="FILE",
        help="Write the sweep's verdicts as an HTML page (or JSON, for a .json FILE).",
    )


def pytest_configure(config: pytest.Config) -> None:
    # one run for record mode ``all`` (the first save of a cassette replaces it, later ones
    # append): xdist workers share the controller's run id and claims folder
    workerinput = getattr(config, "workerinput", None)
    if workerinput and "ssevcr_run" in workerinput:
        config.stash[_RUN] = (workerinput["ssevcr_run"], workerinput["ssevcr_claims"])
    else:
        config.stash[_RUN] = (os.urandom(8).hex(), None)
    config.pluginmanager.register(_KnobParameters(), "ssevcr-knob-parameters")
    config.addinivalue_line(
        "markers",
        "ssevcr(*names_or_paths, timing=None, faults=(), seed=0, match_on=None, ws_match='type', "
        "ignore_body_keys=(), allow_repeats=False, strict=False, before_record_request=None, "
        "before_record_response=None, max_age=None, on_expiry='warn', sweep=None, "
        "sweep_stall=None, cors=False): replay (or record) cassettes for every "
        "httpx/httpx2/aiohttp/requests/urllib3 client in the test (several: searched in order, "
        "the first recorded into)",
    )
    config.stash[_STRICT_ALL] = bool(config.getoption("ssevcr_strict"))
    controller = not hasattr(config, "workerinput")
    if controller and (
        config.getoption("ssevcr_sweep")
        or config.getoption("ssevcr_sweep_report")
        or getattr(config.option, "dist", "no") != "no"  # xdist: the workers sweep
    ):
        config.pluginmanager.register(_Session(config), _SESSION)
    if config.getoption("ssevcr_unused"):
        from ._pytest_unused import Unused

        config.pluginmanager.register(Unused(config), "ssevcr-unused")
    age = config.getoption("ssevcr_max_age")
    if age:
        from ._errors import ConfigError
        from ._expiry import parse_age

        try:
            parse_age(age, what="--ssevcr-max-age")
        except ConfigError as e:
            raise pytest.UsageError(str(e)) from None
    stall = config.getoption("ssevcr_sweep_stall")
    if stall:
        from ._errors import ConfigError

        try:
            _stall(stall, "--ssevcr-sweep-stall")
        except ConfigError as e:
            raise pytest.UsageError(str(e)) from None
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
    """The test's ``ssevcr`` markers as one (looked up once per test: every knob asks)."""
    stash = request.node.stash
    if _MARK not in stash:
        stash[_MARK] = _merged(request.node)
    mark: pytest.Mark | None = stash[_MARK]
    return mark


def _merged(node: Any) -> pytest.Mark | None:
    """Every ``ssevcr`` marker of a test as one: the test's own as written (top to bottom),
    then its class's, then its module's. The cassette names of all of them, in that order;
    their keywords merged, the first one given winning."""
    marks: list[pytest.Mark] = []
    for item in reversed(node.listchain()):
        own = [m for m in getattr(item, "own_markers", ()) if m.name == "ssevcr"]
        marks += reversed(own)  # (pytest keeps a node's markers bottom to top)
    if len(marks) <= 1:
        return marks[0] if marks else None
    kwargs: dict[str, Any] = {}
    for m in reversed(marks):
        kwargs.update(m.kwargs)
    merged = marks[0]
    for m in marks[1:]:
        merged = merged.combined_with(m)
    return merged.combined_with(pytest.mark.ssevcr(**kwargs).mark)


def _case(node: Any) -> Any:
    """The sweep case of a swept test (a ``SweepFault``), else None."""
    callspec = getattr(node, "callspec", None)
    return None if callspec is None else callspec.params.get(_SWEEP)


class _KnobParameters:
    """A knob a ``parametrize`` marker names joins the test's fixtures, as it did when
    ``ssevcr_cassette`` asked pytest for every knob (it computes them itself now: ``_KNOBS``),
    so parametrizing one still works without naming it in the test's arguments. (Before
    pytest's own hook, which checks the names; registered by ``pytest_configure``.)"""

    @pytest.hookimpl(tryfirst=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        closure = metafunc.fixturenames
        if "ssevcr_cassette" not in closure and _merged(metafunc.definition) is None:
            return
        for mark in metafunc.definition.iter_markers("parametrize"):
            names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
            if isinstance(names, str):
                names = [n.strip() for n in names.split(",")]
            closure += [n for n in names if n in _KNOBS and n not in closure]


def _stall(value: object, source: str) -> float:
    """A sweep's stall duration; raises ConfigError."""
    from ._errors import ConfigError
    from ._timing import parse_duration

    seconds = parse_duration(str(value), what=f"{source} duration")
    if seconds <= 0:
        raise ConfigError(f"{source} must be longer than 0, got {value!r}")
    return seconds


def _default_name(node: Any, name: str) -> str:
    """A test's name (``Class.test[param]`` for methods), made safe as a file name."""
    cls = getattr(node, "cls", None)
    name = name if cls is None else f"{cls.__name__}.{name}"
    return re.sub(r"[^\w.\[\]=,+-]", "-", name)


def _named_path(given: object, rootpath: Path, cassette_dir: Path) -> Path:
    """A cassette named in a marker: a bare name in the module's folder, a path with a slash
    relative to the rootdir."""
    if not isinstance(given, str | os.PathLike) or not isinstance(os.fspath(given), str):
        raise pytest.fail.Exception(
            f"the ssevcr marker: a cassette is a file name or path, got {given!r}", pytrace=False
        )
    text = os.fspath(given)
    if "/" in text or os.sep in text:
        return Path(rootpath, text)
    return cassette_dir / (text if text.endswith((".msgpack", ".json")) else f"{text}.msgpack")


# -- the sweep: parametrized at collection -------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``sweep=`` / ``--ssevcr-sweep``: the test once clean and once per catalogue fault."""
    marker = _merged(metafunc.definition)
    if marker is None:
        return
    config = metafunc.config
    level = config.getoption("ssevcr_sweep") or marker.kwargs.get("sweep")
    if not level:
        return
    from ._errors import ConfigError
    from ._pytest_sweep import CLEAN, DEFAULT_STALL, LEVELS, cases

    where = f"{metafunc.definition.nodeid}: the ssevcr marker"
    if level not in LEVELS:
        raise pytest.fail.Exception(
            f"{where}: sweep={level!r}: use {', '.join(map(repr, LEVELS))}", pytrace=False
        )
    given = config.getoption("ssevcr_sweep_stall") or marker.kwargs.get("sweep_stall")
    try:
        stall = _stall(given, "sweep_stall") if given else DEFAULT_STALL
    except ConfigError as e:
        raise pytest.fail.Exception(f"{where}: {e}", pytrace=False) from None
    seed = marker.kwargs.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise pytest.fail.Exception(
            f"{where}: seed must be a whole number, got {seed!r}", pytrace=False
        )
    if not marker.args and any(True for _ in metafunc.definition.iter_markers("parametrize")):
        raise pytest.fail.Exception(
            f"{where}: a parametrized test sweeps a cassette named in the marker (its "
            "parameters would each have their own, and a sweep needs one catalogue)",
            pytrace=False,
        )
    mode = config.getoption("ssevcr_record") or os.environ.get("SSEVCR_RECORD")
    mode = mode or marker.kwargs.get("record")
    paths = _sweep_paths(metafunc, marker)
    found = [CLEAN] if mode == "all" else cases(paths, str(level), seed=seed, stall=stall)
    _sweeping(config)
    if _SWEEP not in metafunc.fixturenames:
        metafunc.fixturenames.append(_SWEEP)
    metafunc.parametrize(_SWEEP, found, ids=[str(c) for c in found])


def _sweeping(config: pytest.Config) -> None:
    """Once a test is swept: judge its cases' reports (and, outside xdist workers, gather them).
    Registered only then, so sessions without a sweep pay nothing per test."""
    plugins = config.pluginmanager
    if not plugins.has_plugin(_SWEEPING):
        plugins.register(_Verdicts(), _SWEEPING)
    if not hasattr(config, "workerinput") and not plugins.has_plugin(_SESSION):
        plugins.register(_Session(config), _SESSION)


def _sweep_paths(metafunc: pytest.Metafunc, marker: pytest.Mark) -> list[Path]:
    """The cassettes a swept test replays, as collection sees them (the marker's names, else the
    default place; a conftest's override of the path fixtures is checked when the test runs)."""
    config = metafunc.config
    folder = Path(config.rootpath) / "cassettes" / Path(metafunc.definition.path).stem
    if marker.args:
        return [_named_path(a, Path(config.rootpath), folder) for a in marker.args[:1]]
    return [folder / f"{_default_name(metafunc.definition, metafunc.definition.name)}.msgpack"]


@pytest.fixture
def ssevcr_fault() -> Any:
    """The fault of this case of a swept test (``sweep=`` / ``--ssevcr-sweep``): ``.spec``,
    ``.kind``, ``.lossy``, ``.why``; the clean case (and a test that is not swept) gets a false
    value with ``spec`` None and ``kind`` ``"clean"``."""
    from ._pytest_sweep import CLEAN

    return CLEAN


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


def _record_mode(request: pytest.FixtureRequest, config: dict[str, Any]) -> str:
    return _first(request, "ssevcr_record", "SSEVCR_RECORD", "record", config, "none")


@pytest.fixture
def ssevcr_record_mode(request: pytest.FixtureRequest, ssevcr_config: dict[str, Any]) -> str:
    """--ssevcr-record > SSEVCR_RECORD > marker ``record=`` > ssevcr_config > ``none``."""
    return _record_mode(request, ssevcr_config)


def _timing(request: pytest.FixtureRequest, config: dict[str, Any]) -> str:
    return _first(request, "ssevcr_timing", "SSEVCR_TIMING", "timing", config, "original")


@pytest.fixture
def ssevcr_timing(request: pytest.FixtureRequest, ssevcr_config: dict[str, Any]) -> str:
    """--ssevcr-timing > SSEVCR_TIMING > marker ``timing=`` > ssevcr_config > ``original``."""
    return _timing(request, ssevcr_config)


def _cassette_dir(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.rootpath) / "cassettes" / Path(request.node.path).stem


@pytest.fixture(scope="module")
def ssevcr_cassette_dir(request: pytest.FixtureRequest) -> Path:
    """``<rootdir>/cassettes/<test module name>``."""
    return _cassette_dir(request)


def _cassette_name(request: pytest.FixtureRequest) -> str:
    node: Any = request.node
    name = node.name
    case = _case(node)
    if case is not None:
        from ._pytest_sweep import strip_case

        name = strip_case(name, case)
    return _default_name(node, name)


@pytest.fixture
def ssevcr_cassette_name(request: pytest.FixtureRequest) -> str:
    """The test's name (``Class.test[param]`` for methods), made safe as a file name; the cases
    of a swept test share the test's."""
    return _cassette_name(request)


def _cassette_path(
    request: pytest.FixtureRequest, folder: Callable[[], Path], name: Callable[[], str]
) -> Path:
    marker = _marker(request)
    if marker is None or not marker.args:
        return folder() / f"{name()}.msgpack"
    return _named_path(marker.args[0], Path(request.config.rootpath), folder())


@pytest.fixture
def ssevcr_cassette_path(
    request: pytest.FixtureRequest, ssevcr_cassette_dir: Path, ssevcr_cassette_name: str
) -> Path:
    """The marker's first argument (a bare name in the module's folder, or a path with a slash
    relative to the rootdir), else ``<cassette dir>/<test name>.msgpack``."""
    return _cassette_path(request, lambda: ssevcr_cassette_dir, lambda: ssevcr_cassette_name)


# The knobs as ``ssevcr_cassette`` reads them. pytest's machinery costs a function-scoped
# fixture ~300 Python calls per test (its SubRequest, a ``RequestFixtureDef`` for ``request``,
# the setup hook), which made the knobs ~1,500 of the plugin's ~4,100 calls per test
# (bench/bench_pytest.py --calls). So a knob the test would get from this plugin is computed
# here, as its fixture computes it; one that a conftest, module, class or parametrization
# overrides (``_own_knobs``, found at collection) is asked of pytest.
_KNOBS: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "ssevcr_config": lambda r: {},
    "ssevcr_record_mode": lambda r: _record_mode(r, _knob(r, "ssevcr_config")),
    "ssevcr_timing": lambda r: _timing(r, _knob(r, "ssevcr_config")),
    "ssevcr_cassette_dir": _cassette_dir,
    "ssevcr_cassette_name": _cassette_name,
    "ssevcr_cassette_path": lambda r: _cassette_path(
        r, lambda: _knob(r, "ssevcr_cassette_dir"), lambda: _knob(r, "ssevcr_cassette_name")
    ),
}
_OWN_KNOBS = pytest.StashKey[frozenset[str]]()  # the knobs a test gets from this plugin


def _knob(request: pytest.FixtureRequest, name: str) -> Any:
    """The knob fixture ``name``'s value for this test (see ``_KNOBS``)."""
    if name in request.node.stash.get(_OWN_KNOBS, ()):
        return _KNOBS[name](request)
    return request.getfixturevalue(name)


def _own_knobs(item: pytest.Item) -> frozenset[str]:
    """The knobs ``item`` would get from this plugin's own fixtures: no conftest, module or
    class defines one of the same name, and no parametrization gives it. This asks pytest's
    fixture manager, which is not public API; on any surprise no knob counts as the plugin's
    own, and every one is asked of pytest (slower, never wrong)."""
    try:
        manager: Any = item.session._fixturemanager
        params = getattr(getattr(item, "callspec", None), "params", {})
        own = set()
        for name in _KNOBS:
            defs = manager.getfixturedefs(name, item)
            if (
                name not in params
                and defs is not None
                and len(defs) == 1
                and getattr(defs[0].func, "__module__", None) == __name__
            ):
                own.add(name)
        return frozenset(own)
    except Exception:  # (pytest's internals changed: the slow way)
        return frozenset()


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
        unknown = [k for k in kwargs if k not in OPTION_NAMES and k not in _PLUGIN_KEYWORDS]
        if unknown:
            raise ConfigError(
                f"{source}: unknown keyword {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join((*OPTION_NAMES, *_PLUGIN_KEYWORDS))}"
            )
    cors = marker.kwargs.get("cors", False) if marker is not None else False
    if not (isinstance(cors, bool) or _origins(cors)):
        raise ConfigError(
            f"the ssevcr marker: cors must be True, False or a list of origins, got {cors!r}"
        )
    kwargs = {**config, **(marker.kwargs if marker is not None else {})}
    for key in (*_OWN_KEYWORDS, *_PLUGIN_KEYWORDS):
        kwargs.pop(key, None)
    given_config = kwargs.get("config")
    if isinstance(given_config, str | os.PathLike) and not Path(given_config).is_absolute():
        kwargs["config"] = Path(request.config.rootpath, given_config)  # from the rootdir
    extra = request.config.getoption("ssevcr_allow_hosts")
    if extra:
        given_hosts = kwargs.get("allowed_hosts") or ()
        given_hosts = [given_hosts] if isinstance(given_hosts, str) else list(given_hosts)
        kwargs["allowed_hosts"] = [*given_hosts, *extra]
    for option, keyword in (("ssevcr_max_age", "max_age"), ("ssevcr_on_expiry", "on_expiry")):
        if request.config.getoption(option):
            kwargs[keyword] = request.config.getoption(option)
    case = _case(request.node)
    if case:  # a sweep's faulted case: the fault on top of the test's own, always replayed
        faults = kwargs.get("faults") or []
        kwargs["faults"] = [*([faults] if isinstance(faults, str) else faults), case.spec]
        record = "none"
        if kwargs.get("on_expiry") == "rerecord":  # a swept case never records: it says so
            kwargs["on_expiry"] = "warn"
    options = Options.parse(path, record=record, timing=timing, **kwargs)
    more = _further_paths(request, marker)
    return options.searching(more) if more else options


def _further_paths(request: pytest.FixtureRequest, marker: pytest.Mark | None) -> list[Path]:
    """The cassettes named after the first (searched after it, in order; never written)."""
    if marker is None or len(marker.args) < 2:
        return []
    root, folder = Path(request.config.rootpath), _knob(request, "ssevcr_cassette_dir")
    return [_named_path(a, root, folder) for a in marker.args[1:]]


def _check_swept(request: pytest.FixtureRequest, path: Path) -> None:
    """A swept test replays the cassette its faults were read from at collection."""
    marker = _marker(request)
    node: Any = request.node
    if marker is None or marker.args:
        return  # named in the marker: collection saw the same path
    folder = Path(request.config.rootpath) / "cassettes" / Path(node.path).stem
    seen = folder / f"{_default_name(node, node.originalname)}.msgpack"
    if seen != path:
        raise pytest.fail.Exception(
            f"ssevcr sweep: the faults were read from {str(seen)!r} at collection, but the "
            f"test's cassette is {str(path)!r} (an override of ssevcr_cassette_dir or "
            "ssevcr_cassette_path is not seen at collection): name the cassette in the marker",
            pytrace=False,
        )


@pytest.fixture
def ssevcr_cassette(request: pytest.FixtureRequest) -> Iterator[ActiveCassette]:
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
    path: Path = _knob(request, "ssevcr_cassette_path")
    case = _case(request.node)
    if case is not None:
        _check_swept(request, path)
    try:
        options = _options(
            request,
            path,
            _knob(request, "ssevcr_record_mode"),
            _knob(request, "ssevcr_timing"),
            _knob(request, "ssevcr_config"),
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
            if case is not None:
                _keep_plays(request, active)
            try:
                use.__exit__(None, None, None)
            except SsevcrError as e:
                if not active.save_failed:
                    raise pytest.fail.Exception(
                        f"ssevcr: saving the cassette failed: {e}", pytrace=False
                    ) from None
            finally:
                unused = request.config.pluginmanager.get_plugin("ssevcr-unused")
                if unused is not None:
                    unused.note(request.node.nodeid, active)
    _fail_on_misses(request.node, active, None)  # misses outside the test call (fixtures)


def _keep_plays(request: pytest.FixtureRequest, active: ActiveCassette) -> None:
    """What a swept case's replay sent, for the sweep's report (on the teardown report)."""
    from ._report import plays_record

    root = Path(request.config.rootpath)
    paths = active.paths
    shown = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths]
    request.node.stash[_PLAYS] = {
        "plays": plays_record(active.plays),
        "meta": {
            "cassettes": shown,
            "seed": active.options.seed,
            "timing": str(active.options.timing),
        },
    }


@pytest.hookimpl(
    trylast=True
)  # (after the hooks of conftests and plugins: a marker they add counts)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test with the ``ssevcr`` marker gets ``ssevcr_cassette`` as its first function-scoped
    fixture, so the cassette is active before its other fixtures (set up after the fixtures of
    wider scopes, which outlive the test). Tests without the marker pay nothing (an autouse
    fixture cost every test of the session ~280 calls)."""
    for item in items:
        names = getattr(item, "fixturenames", None)
        if not isinstance(names, list) or _merged(item) is None:
            continue
        item.stash[_OWN_KNOBS] = _own_knobs(item)
        if "ssevcr_cassette" in names:
            names.remove("ssevcr_cassette")
        names.insert(_first_function_scoped(item, names), "ssevcr_cassette")


def _first_function_scoped(item: pytest.Item, names: list[str]) -> int:
    """Where the function-scoped fixtures start in ``names`` (pytest sorts them after the wider
    scopes). Read from the item's fixture info, which is not public API: failing that, 0."""
    try:
        defs: Any = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
        for i, name in enumerate(names):
            found = defs.get(name)
            if not found or found[-1].scope == "function":
                return i
        return len(names)
    except Exception:  # (pytest's internals changed)
        return 0


@pytest.fixture
def ssevcr_server(
    request: pytest.FixtureRequest, ssevcr_cassette: ActiveCassette
) -> Iterator[ServerThread]:
    """The test's cassette served over a real socket on 127.0.0.1 (``.url``) for clients that
    are not httpx (aiohttp, requests, a subprocess, a browser). It shares the player with
    ``ssevcr_cassette`` (plays, misses and faults are counted once); it replays only. The
    marker's ``cors`` (``True``, or a list of origins) lets a browser page on another origin
    read it."""
    from ._server_thread import ServerThread

    marker = _marker(request)
    cors = marker.kwargs.get("cors", False) if marker is not None else False  # checked: _options
    server = ServerThread(ssevcr_cassette.player, cors=cors, log=lambda _line: None).start()
    ssevcr_cassette.passthrough.add(server.server.authority)
    try:
        yield server
    finally:
        server.close()


def _origins(value: Any) -> bool:
    """A list (or tuple) of origin strings, at least one."""
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(o, str) and o for o in value)
    )


# -- misses fail the test, whatever the client did with the exception ---------------------------


def _fail_on_misses(
    item: pytest.Item, active: ActiveCassette | None, raised: BaseException | None
) -> None:
    """Fail with the explanation of every miss and every refused connection not reported yet
    (and nothing else: no traceback, no chained exception)."""
    if active is None:
        return
    misses, blocked = len(active.misses), len(active.blocked)
    seen_misses, seen_blocked = item.stash.get(_REPORTED, (0, 0))
    if misses <= seen_misses and blocked <= seen_blocked:
        return
    from ._errors import NetworkBlockedError, NoMatchError
    from ._network import report

    item.stash[_REPORTED] = (misses, blocked)
    lines = [active.explain(seen_misses)] if misses > seen_misses else []
    if blocked > seen_blocked:
        lines += [
            report(active, seen_blocked),
            "(only loopback addresses and allowed_hosts are reachable while a cassette "
            "replays: allowed_hosts= on the marker or pytest --ssevcr-allow-host HOST; or "
            "record with --ssevcr-record=once)",
        ]
    quiet = NoMatchError | NetworkBlockedError | pytest.fail.Exception
    if raised is not None and not isinstance(raised, quiet):
        first = (str(raised).splitlines() or [""])[0][:200]
        lines.append(f"(the test raised {type(raised).__name__}: {first})")
    raise pytest.fail.Exception("\n".join(lines), pytrace=False) from None


def _strict(item: pytest.Item, active: ActiveCassette, mark: pytest.Mark | None) -> None:
    """``strict=True`` / ``--ssevcr-strict``: fail a test that left interactions of its
    cassette unplayed (when it replayed)."""
    strict = mark.kwargs.get("strict", False) if mark is not None else False
    if not isinstance(strict, bool):
        raise pytest.fail.Exception(
            f"the ssevcr marker: strict must be True or False, got {strict!r}", pytrace=False
        )
    if not (strict or item.config.getoption("ssevcr_strict")) or active.mode == "record":
        return
    unused = active.unused_in()
    if not unused:
        return
    from ._secrets import mask_url, printable

    lines = []
    cassettes = [active.cassette, *(c for _, c in active.more)]
    for path, cassette in zip(active.paths, cassettes, strict=True):
        mine = [(n, i) for name, n, i in unused if name == str(path)]
        if not mine:
            continue
        lines.append(
            f"ssevcr strict: {len(mine)} of {len(cassette)} interactions of cassette "
            f"{str(path)!r} never played:"
        )
        lines += [
            f"  #{n + 1} {printable(i.request.method)} {printable(mask_url(i.request.url))}"
            for n, i in mine[:10]
        ]
        lines += [f"  ... and {len(mine) - 10} more"] if len(mine) > 10 else []
    raise pytest.fail.Exception("\n".join(lines), pytrace=False)


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
        mark = item.stash.get(_MARK, None)
        if item.config.stash[_STRICT_ALL] or (mark is not None and "strict" in mark.kwargs):
            _strict(item, active, mark)
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


class _Verdicts:
    """In every process that runs swept cases: each case's verdict travels on its reports
    (``report.ssevcr_sweep``, kept by xdist)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        case = _case(item)
        if case is not None:
            from ._pytest_sweep import record, strip_case, verdict

            judged = None
            if not report.skipped:
                judged = verdict(case, call.excinfo if report.failed else None)
            info = record(case, strip_case(item.nodeid, case), call.when, report.outcome, judged)
            if call.when == "teardown":
                plays: dict[str, Any] = item.stash.get(_PLAYS, {})
                info.update(plays)
            report.ssevcr_sweep = info  # type: ignore[attr-defined]
        return report


class _Session:
    """What the controlling process (not an xdist worker) gathers from every report: registered
    when a test is swept here, or up front with --ssevcr-sweep, --ssevcr-sweep-report or xdist."""

    def __init__(self, config: pytest.Config) -> None:
        from ._pytest_sweep import Summary

        self.config = config
        self.sweep = Summary(config.getoption("ssevcr_sweep"))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if hasattr(report, "ssevcr_sweep") or (report.failed and "[" in report.nodeid):
            self.sweep.add(report)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = self.sweep.lines()
        if lines:
            terminalreporter.write_sep("=", "ssevcr sweep")
            for line in lines:
                terminalreporter.write_line(line)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        target = self.config.getoption("ssevcr_sweep_report")
        if not target:
            return
        path = Path(self.config.invocation_params.dir, target)
        try:
            self.sweep.write(str(path))
        except OSError as e:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(
                    f"ssevcr: cannot write the sweep report {str(path)!r}: {e.strerror or e}",
                    red=True,
                )
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


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
