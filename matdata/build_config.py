"""The options of a build: :class:`BuildConfig` (stored in ``dataset.json``), and
:func:`build_config`, which makes one from the strings of ``matdata build`` (parsed by
:mod:`matdata.options`).

Pure validation, no I/O: a bad value is a :class:`~matdata.errors.ConfigError` naming the
option.  Planning is in :mod:`matdata.planning`, shard execution in :mod:`matdata.builder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from matdata.errors import ConfigError, MatdataError

#: Supervisely image tags excluded from foregrounds by default: in "not-marked-people"
#: images some people are not annotated, so the mask is incomplete (wrong supervision).
DEFAULT_EXCLUDE_TAGS = ("not-marked-people",)
DEFAULT_SHARD_SIZE = "256MB"
#: Upper bound of ``--per-fg`` (the CLI shows and checks the same one).
MAX_PER_FG = 1000


@dataclass
class BuildConfig:
    """Every option of a build; :meth:`to_dict` is stored in ``dataset.json``."""

    fg: tuple[str, ...]  # one or more --fg source specs (a single str is accepted)
    bg: tuple[str, ...]
    out: str
    per_fg: int = 10
    size: tuple[int, int] | None = (512, 512)
    augment: bool = True
    trimap: bool = False
    trimap_eps: float = 0.01
    trimap_rel_width: float = 0.01
    keep_layers: bool = False
    formats: tuple[str, ...] = ("parquet",)
    shard_size: int = 256 * 1000**2
    samples_per_shard: int | None = None
    seed: int = 0
    jpeg_quality: int = 95
    bg_crop: str = "random"
    bg_blur: float = 0.0
    noise: float = 0.0
    jpeg_match: float = 0.0
    color_jitter: float = 0.0
    fg_estimator: str = "blur_fusion"
    bg_categories: tuple[str, ...] = ()
    bg_io: str | None = None
    exclude_tags: tuple[str, ...] = DEFAULT_EXCLUDE_TAGS
    fg_options: dict[str, Any] = field(default_factory=dict)
    bg_options: dict[str, Any] = field(default_factory=dict)
    bg_weights: dict[str, float] | None = None  # --bg-weights NAME=W,...; None: by size

    def __post_init__(self) -> None:
        from matdata.planning import parse_weights
        from matdata.shards import check_formats

        self.fg = _specs(self.fg, "--fg")
        self.bg = _specs(self.bg, "--bg")
        self.bg_weights = parse_weights(self.bg_weights)

        if not 1 <= self.per_fg <= MAX_PER_FG:
            raise ConfigError(f"--per-fg must be in 1..{MAX_PER_FG}, got {self.per_fg}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")
        if self.samples_per_shard is not None and self.samples_per_shard < 1:
            raise ConfigError(f"--samples-per-shard must be >= 1, got {self.samples_per_shard}")
        if self.bg_io not in (None, "indoor", "outdoor"):
            raise ConfigError(f"--bg-io must be indoor or outdoor, got {self.bg_io!r}")
        from matdata.foreground import METHODS

        if self.fg_estimator not in METHODS:
            raise ConfigError(
                f"unknown --fg-estimator {self.fg_estimator!r}", hint=f"one of {', '.join(METHODS)}"
            )
        try:
            self.formats = check_formats(self.formats)
        except MatdataError as exc:
            raise ConfigError(str(exc), hint=exc.hint) from None
        self.compose_config()  # validate early (one line for the user)

    def compose_config(self):  # -> matdata.compose.ComposeConfig
        from matdata.compose import ComposeConfig
        from matdata.trimap import TrimapParams

        try:
            tp = TrimapParams(eps=self.trimap_eps, rel_width=self.trimap_rel_width)
            return ComposeConfig(
                size=self.size,
                augment=self.augment,
                bg_crop=self.bg_crop,
                trimap=tp if self.trimap else None,
                keep_layers=self.keep_layers,
                jpeg_quality=self.jpeg_quality,
                bg_blur=self.bg_blur,
                noise=self.noise,
                jpeg_match=self.jpeg_match,
                color_jitter=self.color_jitter,
                fg_estimator=self.fg_estimator,
            )
        except ValueError as exc:
            raise ConfigError(f"bad compose option: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, deterministic; ``out`` is left out (a dataset can be moved)."""
        d = asdict(self)
        d.pop("out")
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        d["compose"] = self.compose_config().to_dict()
        return d


def _specs(value: str | Sequence[str], flag: str) -> tuple[str, ...]:
    specs = (value,) if isinstance(value, str) else tuple(value)
    specs = tuple(s for s in specs if s)
    if not specs:
        raise ConfigError(f"{flag} is required", hint=f"give {flag} NAME (repeatable)")
    return specs


def parse_exclude_tags(tags: Sequence[str] | None) -> tuple[str, ...]:
    """``--exclude-tag`` values: None (not given) -> :data:`DEFAULT_EXCLUDE_TAGS`; ``none``
    (any case) and empty values are dropped, so ``--exclude-tag none`` keeps every tag."""
    if tags is None:
        return DEFAULT_EXCLUDE_TAGS
    return tuple(t for t in tags if t and t.lower() != "none")


def check_max_reject_rate(rate: float) -> float:
    """``--max-reject-rate``: a fraction in 0..1."""
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"--max-reject-rate must be in 0..1, got {rate}")
    return rate


def build_config(
    fg: Sequence[str],
    bg: Sequence[str],
    out: str,
    *,
    size: str | None = "512",
    shard_size: str | int = DEFAULT_SHARD_SIZE,
    fg_options: list[str] | None = None,
    bg_options: list[str] | None = None,
    exclude_tags: Sequence[str] | None = None,
    bg_categories: Sequence[str] | None = None,
    **options: Any,
) -> BuildConfig:
    """A :class:`BuildConfig` from the option strings of ``matdata build``: ``size``
    (``512`` | ``WxH`` | ``native``), ``shard_size`` (``256MB``...), ``KEY=VALUE`` source
    options, ``--exclude-tag`` values (:func:`parse_exclude_tags`); ``options``: the other
    fields of :class:`BuildConfig` as they are."""
    from matdata.options import parse_bytes, parse_options, parse_size

    return BuildConfig(
        fg=tuple(fg),
        bg=tuple(bg),
        out=out,
        size=parse_size(size),
        shard_size=parse_bytes(shard_size),
        fg_options=parse_options(fg_options, "--fg-option"),
        bg_options=parse_options(bg_options, "--bg-option"),
        exclude_tags=parse_exclude_tags(exclude_tags),
        bg_categories=tuple(bg_categories or ()),
        **options,
    )


__all__ = [
    "DEFAULT_EXCLUDE_TAGS",
    "DEFAULT_SHARD_SIZE",
    "MAX_PER_FG",
    "BuildConfig",
    "build_config",
    "check_max_reject_rate",
    "parse_exclude_tags",
]
