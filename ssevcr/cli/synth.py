"""``ssevcr synth``: a cassette from content, without a network.

    ssevcr synth --provider openai-chat --text "Once upon a time..." -o story.msgpack
    ssevcr synth --provider anthropic --tool-call get_weather '{"city":"Paris"}' -o tool.msgpack
    ssevcr synth --like recorded.msgpack --text "A different answer" -o new.msgpack

Parsing options only: the stream is built by :mod:`ssevcr._synth` (templates as data), its timing
by :mod:`ssevcr._profiles`, the file written by :mod:`ssevcr._store`. Without ``-o`` the
response body is written to stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .. import _profiles, _store, _synth
from .._cassette import Cassette
from .._errors import ConfigError
from . import not_an_input

__all__ = ["parse_usage", "synth_command"]

MAX_REQUEST = 16 * 1024 * 1024  # bytes of a --request file


def parse_usage(text: str) -> _synth.Usage:
    """``12,30``, ``input=12,output=30,reasoning=4`` or a JSON object with those keys (or the
    ``*_tokens`` names)."""
    text = text.strip()
    values: dict[str, Any]
    if text.startswith("{"):
        try:
            values = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"bad --usage {text!r}: {e}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"bad --usage {text!r}: expected a JSON object")
    else:
        values = {}
        for i, item in enumerate(p for p in text.split(",") if p.strip()):
            key, sep, value = item.partition("=")
            if not sep:
                key, value = ("input", "output", "reasoning")[min(i, 2)], key
            values[key.strip()] = value.strip()
    out: dict[str, int] = {}
    for key, value in values.items():
        name = key.removesuffix("_tokens")
        if name not in ("input", "output", "reasoning"):
            raise ConfigError(f"bad --usage key {key!r}; valid: input, output, reasoning")
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"bad --usage {key}={value!r}: a whole number") from None
        if n < 0:
            raise ConfigError(f"bad --usage {key}={n}: must not be negative")
        out[f"{name}_tokens"] = n
    return _synth.Usage(**out)


def _request(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            value = _store.read_regular(path, limit=MAX_REQUEST).decode("utf-8")
        except OSError as e:
            raise ConfigError(
                f"cannot read --request file {str(path)!r}: {e.strerror or e}"
            ) from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"cannot read --request file {str(path)!r}: not UTF-8 text (byte {e.start})"
            ) from None
    try:
        data = json.loads(value)
    except ValueError as e:
        raise ConfigError(f"--request is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError("--request must be a JSON object (the request body)")
    return data


def _split(value: str) -> str | int:
    if value.isdigit():
        return int(value)
    if value not in _synth.SPLITS:
        raise click.BadParameter(f"{value!r}: use words, tokens, chars or a number")
    return value


@click.command("synth")
@click.option(
    "--provider",
    "provider",
    metavar="NAME",
    help="openai-chat, openai-responses, anthropic, gemini or generic (or a dated template, "
    "e.g. openai-chat@2024-09). Not with --like.",
)
@click.option("--text", default="", help="The answer's text.")
@click.option(
    "--tool-call",
    "tool_calls",
    nargs=2,
    multiple=True,
    metavar="NAME JSON",
    help="A tool call with its arguments (repeatable: parallel calls).",
)
@click.option(
    "--reasoning", default="", help="Reasoning / thinking text, where the provider has it."
)
@click.option("--finish-reason", help="The provider's own word (stop, length, end_turn, STOP...).")
@click.option("--usage", help="Token counts: IN,OUT[,REASONING] or input=N,output=N or JSON.")
@click.option(
    "--model", help="The model the answer names (default: the request's or the template's)."
)
@click.option("--request", "request", metavar="JSON|@FILE", help="The request body it answers.")
@click.option("--url", help="The request URL (default: the provider's).")
@click.option(
    "--split",
    "split_by",
    default="tokens",
    show_default=True,
    metavar="words|tokens|chars|N",
    callback=lambda ctx, p, v: _split(v),
    help="How the text is cut into events.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Ids, padding and jitter.")
@click.option("--done", is_flag=True, help="generic: end with data: [DONE].")
@click.option(
    "--timing",
    "profile",
    metavar="PROFILE",
    help=f"Timing profile (default {_synth.DEFAULT_PROFILE}): ttft:DUR, tps:N, jitter:PCT, "
    "profile:CASSETTE, joined by +.",
)
@click.option(
    "--like", metavar="CASSETTE", help="Keep this recording's framing, headers, ids and timing."
)
@click.option(
    "--interaction", "index", default=1, show_default=True, help="With --like: which one."
)
@click.option(
    "-o", "--output", metavar="CASSETTE", help="Write a cassette (default: body to stdout)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output cassette.")
@click.option("--append", is_flag=True, help="Add the interaction to an existing output cassette.")
def synth_command(
    provider: str | None,
    text: str,
    tool_calls: tuple[tuple[str, str], ...],
    reasoning: str,
    finish_reason: str | None,
    usage: str | None,
    model: str | None,
    request: str | None,
    url: str | None,
    split_by: str | int,
    seed: int,
    done: bool,
    profile: str | None,
    like: str | None,
    index: int,
    output: str | None,
    overwrite: bool,
    append: bool,
) -> None:
    """Build a cassette from content, without a network: the stream a provider would send."""
    if overwrite and append:
        raise click.UsageError("--overwrite and --append exclude each other")
    not_an_input(output, [request[1:] if request and request.startswith("@") else None])
    if output and Path(output).exists() and not (overwrite or append):
        raise ConfigError(f"{output!r} exists; use --overwrite to replace it or --append")
    content = _synth.Content(
        text=text,
        tool_calls=tuple(_synth.ToolCall(name, args) for name, args in tool_calls),
        reasoning=reasoning,
        finish_reason=finish_reason,
        usage=parse_usage(usage) if usage else _synth.Usage(),
        model=model,
    )
    meta: dict[str, str] = {}
    if like:
        if provider:
            raise click.UsageError(
                "--provider and --like exclude each other (--like keeps its own)"
            )
        from .. import _mould

        recorded = _store.load(like)
        meta.update(recorded.meta)
        if not 1 <= index <= len(recorded.interactions):
            raise ConfigError(
                f"{like} has {len(recorded.interactions)} interaction(s), not {index}"
            )
        inter = _mould.recast(
            recorded.interactions[index - 1], content, seed=seed, split_by=split_by
        )
    else:
        steps = _profiles.resolve(
            _profiles.parse(profile or _synth.DEFAULT_PROFILE), _store.profile_times
        )
        inter = _synth.synthesize(
            provider or "openai-chat",
            content,
            request=_request(request),
            split_by=split_by,
            seed=seed,
            done=done,
            profile=steps,
            url=url,
        )
    if output is None:
        sys.stdout.buffer.write(inter.response.body)
        sys.stdout.flush()
        return
    if append and Path(output).exists():
        _store.append(output, [inter])  # under the lock; a cassette that does not load is kept
    else:
        _store.save(
            Cassette((inter,), meta={**meta, "synthesized": inter.meta["synthesized"]}), output
        )
    r = inter.response
    click.echo(
        f"{output}: {inter.meta['synthesized']}, {len(r.chunk_sizes)} chunk(s), "
        f"{len(r.body)} bytes, timing {inter.meta.get('profile', 'of the recording')}",
        err=True,
    )
