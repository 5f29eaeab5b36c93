"""First contact with hostile files: the real CLI, as a subprocess, given a FIFO with no writer,
bytes that are not UTF-8 or not msgpack, must answer with one ``Error:`` line naming the file,
exit 1, and never hang nor print a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import IO

import pytest
from replay_helpers import CLI


def run(
    args: list[str], cwd: Path, stdin: IO[bytes] | int = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    # a hang is a failure: TimeoutExpired fails the test
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=20,
    )


def one_error(result: subprocess.CompletedProcess[str], name: str) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and name in errors[0], output
    return errors[0]


EXAMPLE = str(Path(__file__).parent.parent / "cassettes/examples/openai-chat-text.msgpack")
FIFO_CASES = {
    "import": ["import", "in.fifo", "-o", "out.msgpack"],
    "import --from vcrpy": ["import", "--from", "vcrpy", "in.fifo", "-o", "out.msgpack"],
    "replay --config": ["replay", "--config", "in.fifo", "--listen", "127.0.0.1:0", "--", "true"],
    "replay --journal": [
        "replay",
        EXAMPLE,
        "--journal",
        "in.fifo",
        "--listen",
        "127.0.0.1:0",
        "--",
        "true",
    ],
    "synth --request @": [
        "synth",
        "--provider",
        "openai-chat",
        "--text",
        "hi",
        "--request",
        "@in.fifo",
    ],
}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("case", FIFO_CASES)
def test_a_fifo_with_no_writer_is_refused_not_waited_on(case: str, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "in.fifo")
    error = one_error(run(FIFO_CASES[case], tmp_path), "in.fifo")
    assert ("a FIFO that nothing reads" if "--journal" in case else "not a regular file") in error
    assert not (tmp_path / "out.msgpack").exists()


def test_a_vcrpy_yaml_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_bytes(b'interactions:\n- x: "\xff"\n')
    error = one_error(
        run(["import", "--from", "vcrpy", "c.yaml", "-o", "o.msgpack"], tmp_path), "c.yaml"
    )
    assert error.endswith("not UTF-8 text (byte 20)")
    assert not (tmp_path / "o.msgpack").exists()


def test_random_bytes_say_what_msgpack_found_without_an_empty_reason(tmp_path: Path) -> None:
    (tmp_path / "r.msgpack").write_bytes(b"\xc1" + bytes(range(256)))  # 0xc1: never used
    error = one_error(run(["show", "r.msgpack"], tmp_path), "r.msgpack")
    assert "not a readable msgpack cassette" in error
    assert ": )" not in error


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["replay", "--config", "c.yaml", "--listen", "127.0.0.1:0", "--", "true"],
            "cannot read configuration 'c.yaml': not UTF-8 text (byte 0)",
        ),
        (
            ["synth", "--provider", "openai-chat", "--text", "hi", "--request", "@c.yaml"],
            "cannot read --request file 'c.yaml': not UTF-8 text (byte 0)",
        ),
    ],
)
def test_a_text_file_that_is_not_utf8_says_so_plainly(
    args: list[str], said: str, tmp_path: Path
) -> None:
    (tmp_path / "c.yaml").write_bytes(b"\x8d\x00")
    assert one_error(run(args, tmp_path), "c.yaml").endswith(said)


@pytest.mark.parametrize("option", ["--json", "--html"])
def test_a_sweep_report_that_cannot_be_written_is_one_error_after_the_results(
    option: str, tmp_path: Path
) -> None:
    cassette = Path(__file__).parent.parent / "cassettes/examples/openai-chat-text.msgpack"
    (tmp_path / "afile").write_bytes(b"")
    result = run(
        ["sweep", str(cassette), "--catalog", "none", "--fault", "status:500", option,
         "afile/report", "--", "true"],
        tmp_path,
    )  # fmt: skip
    error = one_error(result, "afile/report")
    assert error == "Error: cannot write 'afile/report': 'afile' is not a folder"
    assert "sweep of " in result.stdout  # the results were shown before the write failed


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "--config", "a\nb.yaml", "--listen", "127.0.0.1:0", "--", "true"],
        ["synth", "--provider", "openai-chat", "--text", "hi", "--request", "@a\nb.yaml"],
        ["synth", "--provider", "openai-chat", "--text", "hi", "-o", "a\nb.yaml"],
    ],
)
def test_a_file_name_with_a_newline_stays_on_the_one_error_line(
    args: list[str], tmp_path: Path
) -> None:
    if args[-1] == "a\nb.yaml":
        (tmp_path / "a\nb.yaml").write_bytes(b"x")  # -o: an existing file
    one_error(run(args, tmp_path), "'a\\nb.yaml'")


@pytest.mark.parametrize("source", ["vcrpy", "har"])
@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[" * 100_000 + "]" * 100_000, "maximum recursion depth"),
        ('{"log": {"entries": [' + "1" * 5000 + "]}}", "4300 digits"),
    ],
)
def test_json_too_deep_or_too_long_a_number_to_import_is_one_error(
    source: str, text: str, said: str, tmp_path: Path
) -> None:
    (tmp_path / "c.json").write_text(text)
    result = run(["import", "--from", source, "c.json", "-o", "o.msgpack"], tmp_path)
    error = one_error(result, "'c.json'")
    assert "not usable JSON" in error and said in error
    assert not (tmp_path / "o.msgpack").exists()


def test_a_vcrpy_yaml_of_nested_aliases_is_read_in_a_moment(tmp_path: Path) -> None:
    """A billion laughs: each line aliases the previous one nine times (9**9 paths)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    (tmp_path / "c.yaml").write_text("\n".join([*lines, "interactions: *a8", ""]))
    result = run(["import", "--from", "vcrpy", "c.yaml", "-o", "o.msgpack"], tmp_path)
    assert "expected a mapping with request and response" in result.stderr
    one_error(result, "'c.yaml'")
    assert not (tmp_path / "o.msgpack").exists()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "x: [\n",  # PyYAML's message spans four lines, a caret under a copy of the line
            "not valid YAML: expected the node content, but found '<stream end>'"
            " (line 2, column 1)",
        ),
        ("x: 1\n", "unknown key(s) 'x'"),
        ("responses: [{}]\n", "responses[0] needs a name"),
        ("1: x\nb: y\n", "unknown key(s) 'b', 1"),  # keys of two types: were not sortable
        ("responses: [{name: a, content: x, 1: 2, b: 3}]\n", "response 'a': unknown key(s) 'b', 1"),
    ],
)
@pytest.mark.parametrize("name", ["a\nb.yaml", "c\x1b[31m.yaml"])
def test_a_configuration_that_does_not_parse_is_one_error_naming_it_quoted(
    name: str, text: str, said: str, tmp_path: Path
) -> None:
    (tmp_path / name).write_text(text)
    result = run(["replay", "--config", name, "--listen", "127.0.0.1:0", "--", "true"], tmp_path)
    error = one_error(result, repr(name))
    assert error == f"Error: {name!r}: {said}"
    assert "\x1b" not in result.stdout + result.stderr


A_FILE_ON_THE_WAY = {
    "import -o": (["import", "t.json", "-o", "afile/o.msgpack"], "cannot be written, not saved"),
    "import -o, deeper": (["import", "t.json", "-o", "afile/sub/o.msgpack"], "cannot be written"),
    "export -o, deeper": (["export", EXAMPLE, "-o", "afile/sub/o.json"], "cannot write"),
    "synth -o": (
        ["synth", "--provider", "openai-chat", "--text", "hi", "-o", "afile/o.msgpack"],
        "cannot be written, not saved",
    ),
    "show": (["show", "afile/o.msgpack"], "cannot be read"),
    "import FILE": (["import", "afile/o.json", "-o", "o.msgpack"], "cannot be read"),
    "replay --config": (
        ["replay", "--config", "afile/c.yaml", "--listen", "127.0.0.1:0", "--", "true"],
        "cannot read configuration",
    ),
}


@pytest.mark.parametrize("case", A_FILE_ON_THE_WAY)
def test_a_file_where_a_folder_should_be_is_named(case: str, tmp_path: Path) -> None:
    """Was "File exists" (EEXIST from makedirs), "Not a directory", or named 'afile/sub'."""
    (tmp_path / "afile").write_bytes(b"")
    assert run(["export", EXAMPLE, "-o", "t.json"], tmp_path).returncode == 0
    args, said = A_FILE_ON_THE_WAY[case]
    error = one_error(run(args, tmp_path), "'afile/")
    assert said in error and error.endswith(": 'afile' is not a folder"), error
    assert (tmp_path / "afile").read_bytes() == b""


@pytest.mark.parametrize("source", ["json", "vcrpy", "har"])
def test_an_import_larger_than_its_limit_is_refused_unread(source: str, tmp_path: Path) -> None:
    """A sparse file one byte over 256 MiB: refused from its size (was read whole, then
    parsed: 2 GiB took 1.7 GB and more than 10 s)."""
    with open(tmp_path / "big.json", "wb") as f:
        f.truncate((256 << 20) + 1)
    result = run(["import", "--from", source, "big.json", "-o", "o.msgpack"], tmp_path)
    error = one_error(result, "'big.json'")
    assert error.endswith(
        ": larger than 256 MiB (268435456 bytes), not read (--max-input SIZE reads more)"
    )
    assert not (tmp_path / "o.msgpack").exists()


def test_import_max_input_bounds_a_file_and_stdin_alike(tmp_path: Path) -> None:
    assert run(["export", EXAMPLE, "-o", "t.json"], tmp_path).returncode == 0
    size = (tmp_path / "t.json").stat().st_size
    args = ["import", "--max-input", str(size - 1), "-o", "o.msgpack"]
    one_error(run([*args, "t.json"], tmp_path), f"({size - 1} bytes), not read")
    with open(tmp_path / "t.json", "rb") as f:
        one_error(run([*args, "-"], tmp_path, stdin=f), f"({size - 1} bytes), not read")
    assert not (tmp_path / "o.msgpack").exists()
    with open(tmp_path / "t.json", "rb") as f:
        ok = run(["import", "--max-input", str(size), "-o", "o.msgpack", "-"], tmp_path, stdin=f)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "o.msgpack").read_bytes() == Path(EXAMPLE).read_bytes()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no terminals here")
def test_import_from_a_terminal_is_refused_not_waited_on(tmp_path: Path) -> None:
    main, secondary = os.openpty()
    try:
        with open(secondary, "rb", closefd=False) as tty:
            error = one_error(run(["import", "-", "-o", "o.msgpack"], tmp_path, stdin=tty), "")
    finally:
        os.close(main)
        os.close(secondary)
    assert (
        error
        == "Error: cassette '<stdin>': is a terminal: pipe or redirect a file to it (- < FILE)"
    )


SAME_FILE = {
    "export -o": ["export", "c.msgpack", "-o", "c.msgpack"],
    "export -o a symlink to it": ["export", "c.msgpack", "-o", "link.msgpack"],
    "export -o a hard link to it": ["export", "c.json", "-o", "hard.json"],
    "import -o": ["import", "c.json", "-o", "c.json"],
    "import --from vcrpy -o a hard link to it": [
        "import", "--from", "vcrpy", "c.json", "-o", "hard.json"
    ],
    "show --html": ["show", "c.msgpack", "--html", "c.msgpack"],
    "show --svg, through a symlink": ["show", "link.msgpack", "--svg", "c.msgpack"],
    "sweep --json": [
        "sweep", "c.msgpack", "--catalog", "none", "--fault", "status:500", "--json",
        "c.msgpack", "--", "true"
    ],
    "replay --journal (truncated it)": [
        "replay", "c.msgpack", "--journal", "link.msgpack", "--listen", "127.0.0.1:0", "--",
        "true"
    ],
    "synth -o --overwrite its --request": [
        "synth", "--provider", "openai-chat", "--text", "hi", "--request", "@c.json", "-o",
        "c.json", "--overwrite"
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", SAME_FILE)
def test_an_output_that_is_its_own_input_is_refused(case: str, tmp_path: Path) -> None:
    """Was written over its input: a cassette became its JSON twin or an HTML page, a twin
    became msgpack, a journal truncated the cassette to 0 bytes, a symlink became a file."""
    (tmp_path / "c.msgpack").write_bytes(Path(EXAMPLE).read_bytes())
    assert run(["export", EXAMPLE, "-o", "c.json"], tmp_path).returncode == 0
    (tmp_path / "link.msgpack").symlink_to("c.msgpack")
    os.link(tmp_path / "c.json", tmp_path / "hard.json")
    before = {name: (tmp_path / name).read_bytes() for name in ("c.msgpack", "c.json")}
    args = SAME_FILE[case]
    error = one_error(run(args, tmp_path), "is the file this command reads")
    option = next(a for a in args if a in ("-o", "--html", "--svg", "--json", "--journal"))
    output = args[args.index(option) + 1]
    assert error.startswith(f"Error: {option} {output!r} is the file this command reads")
    assert "nothing was written" in error
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert (tmp_path / "link.msgpack").is_symlink()


@pytest.mark.parametrize("form", ["c.msgpack", "c.json"])
@pytest.mark.parametrize("args", [["show"], ["show", "--diff-text"], ["export"], ["audit"]])
def test_a_cassette_named_dash_is_read_from_stdin(
    args: list[str], form: str, tmp_path: Path
) -> None:
    """Was "cassette '-': no such file" (a pipe, git, ``ssevcr export c | ssevcr show -``)."""
    (tmp_path / "c.msgpack").write_bytes(Path(EXAMPLE).read_bytes())
    assert run(["export", EXAMPLE, "-o", "c.json"], tmp_path).returncode == 0
    from_file = run([*args, form], tmp_path)
    with open(tmp_path / form, "rb") as f:
        piped = run([*args, "-"], tmp_path, stdin=f)
    assert piped.returncode == from_file.returncode == 0, piped.stderr
    assert piped.stdout.replace("<stdin>", form) == from_file.stdout
    assert piped.stderr == from_file.stderr
    assert piped.stdout + piped.stderr != ""


@pytest.mark.parametrize("command", ["show", "export", "audit"])
def test_a_cassette_on_stdin_is_bounded_and_never_a_terminal(command: str, tmp_path: Path) -> None:
    size = Path(EXAMPLE).stat().st_size
    with open(EXAMPLE, "rb") as f:
        error = one_error(run([command, "--max-input", str(size - 1), "-"], tmp_path, stdin=f), "")
    assert error.startswith("Error: cassette '<stdin>': larger than ")
    assert error.endswith(f"({size - 1} bytes), not read (--max-input SIZE reads more)")
    main, secondary = os.openpty()
    try:
        with open(secondary, "rb", closefd=False) as tty:
            error = one_error(run([command, "-"], tmp_path, stdin=tty), "'<stdin>'")
    finally:
        os.close(main)
        os.close(secondary)
    assert error.endswith("is a terminal: pipe or redirect a file to it (- < FILE)")


def test_audit_of_stdin_names_it_in_each_finding(tmp_path: Path) -> None:
    """Was ``-: interaction 1: ...`` (the argument, not the name the other commands give)."""
    from test_review import planted

    from ssevcr import _store

    _store.save(planted(), tmp_path / "leaky.msgpack")
    from_file = run(["audit", "leaky.msgpack"], tmp_path)
    with open(tmp_path / "leaky.msgpack", "rb") as f:
        piped = run(["audit", "-"], tmp_path, stdin=f)
    assert piped.returncode == from_file.returncode == 1, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines and all(line.startswith("<stdin>: interaction ") for line in lines)
    assert piped.stdout.replace("<stdin>", "leaky.msgpack") == from_file.stdout
