"""The option strings of `ingest` and `build` (one parser each) and BuildConfig from them."""

from __future__ import annotations

import pytest

from matdata.build_config import (
    DEFAULT_EXCLUDE_TAGS,
    BuildConfig,
    build_config,
    check_max_reject_rate,
    parse_exclude_tags,
)
from matdata.errors import ConfigError
from matdata.options import parse_bytes, parse_options, parse_size


def test_source_options_parse_json_values_and_keep_text() -> None:
    got = parse_options(["n_fg=6", 'size="64x80"', "io=outdoor", "ids=[1, 2]", " k = true"])
    assert got == {"n_fg": 6, "size": "64x80", "io": "outdoor", "ids": [1, 2], "k": True}
    assert parse_options(None) == {} and parse_options([]) == {}
    assert parse_options(["expr=a=b"]) == {"expr": "a=b"}  # the first '=' splits


@pytest.mark.parametrize("bad", ["novalue", "=3", " =x"])
def test_a_bad_source_option_names_its_flag(bad: str) -> None:
    for flag in ("--option", "--fg-option", "--bg-option"):
        with pytest.raises(ConfigError) as exc:
            parse_options(["ok=1", bad], flag)
        assert exc.value.one_line().startswith(f"{flag} {bad!r} is not KEY=VALUE")


def test_exclude_tags_default_and_none() -> None:
    assert parse_exclude_tags(None) == DEFAULT_EXCLUDE_TAGS == ("not-marked-people",)
    assert parse_exclude_tags(["none"]) == () and parse_exclude_tags(["NONE", ""]) == ()
    assert parse_exclude_tags(["a", "None", "b"]) == ("a", "b")


def test_max_reject_rate_is_a_fraction() -> None:
    assert check_max_reject_rate(0.0) == 0.0 and check_max_reject_rate(1.0) == 1.0
    for bad in (-0.01, 1.5):
        with pytest.raises(ConfigError, match="--max-reject-rate must be in 0..1"):
            check_max_reject_rate(bad)


def test_build_config_from_the_command_line_strings() -> None:
    cfg = build_config(
        ["demo"],
        ["demo"],
        "/tmp/x",
        size="64x48",
        shard_size="1MiB",
        fg_options=["n_fg=3"],
        bg_options=["n_bg=2"],
        exclude_tags=["none"],
        bg_categories=["beach"],
        per_fg=2,
    )
    assert cfg == BuildConfig(
        fg=("demo",),
        bg=("demo",),
        out="/tmp/x",
        size=(64, 48),
        shard_size=1024**2,
        fg_options={"n_fg": 3},
        bg_options={"n_bg": 2},
        exclude_tags=(),
        bg_categories=("beach",),
        per_fg=2,
    )
    default = build_config(["demo"], ["demo"], "/tmp/y")
    assert default.size == (512, 512) and default.shard_size == parse_bytes("256MB")
    assert default.exclude_tags == DEFAULT_EXCLUDE_TAGS
    assert build_config(["demo"], ["demo"], "/tmp/z", size="native").size is None
    with pytest.raises(ConfigError, match="--fg-option"):
        build_config(["demo"], ["demo"], "/tmp/z", fg_options=["oops"])
    with pytest.raises(ConfigError, match="bad --size"):
        build_config(["demo"], ["demo"], "/tmp/z", size="big")
    assert parse_size("640x480") == (640, 480)
