"""Rejects: every input that could not be used, with the reason.  Nothing is lost silently."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from matdata.errors import MatdataError


@dataclass(frozen=True)
class Reject:
    """One unusable input: which source, which file (or item id), why."""

    source: str
    path: str
    reason: str  # a stable snake_case code, e.g. "truncated", "missing_matte"
    detail: str = ""
    stage: str = "ingest"  # ingest | build | harmonize | qa

    @classmethod
    def from_error(cls, source: str, path: str, err: MatdataError, stage: str = "ingest") -> Reject:
        return cls(source, path, err.reason, getattr(err, "detail", "") or str(err), stage)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


REJECT_COLUMNS = ("source", "path", "reason", "detail", "stage")


def count_by_reason(rejects: Iterable[Reject]) -> dict[str, int]:
    """``{reason: count}`` sorted by reason."""
    return dict(sorted(Counter(r.reason for r in rejects).items()))


def write_rejects(path: str, rejects: Iterable[Reject]) -> None:
    """Write rejects as Parquet (columns :data:`REJECT_COLUMNS`), atomically."""
    import pyarrow as pa

    from matdata.storage import atomic_write_parquet

    rows = [r.to_dict() for r in rejects]
    table = pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in REJECT_COLUMNS})
    atomic_write_parquet(table, path)


def read_rejects(path: str) -> list[Reject]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from matdata.errors import DatasetError
    from matdata.storage import open_input

    try:
        with open_input(path) as f:
            table = pq.read_table(f, columns=list(REJECT_COLUMNS))
        rows = table.to_pylist()
    except (pa.ArrowException, ValueError, KeyError) as exc:  # not a rejects table
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DatasetError(
            f"{path} is not a readable rejects table: {msg}",
            hint="delete it and re-run the command that wrote it",
        ) from None
    return [Reject(**{k: "" if v is None else str(v) for k, v in row.items()}) for row in rows]


class RejectRateError(MatdataError):
    """A build's build-stage rejects exceed ``--max-reject-rate`` of what a source found:
    a systematic failure, not a few bad files.  Carries the counts for the CLI's table."""

    reason = "reject_rate"

    def __init__(
        self,
        message: str,
        *,
        by_reason: dict[str, int],
        accounting: dict[str, dict[str, int]],
        hint: str | None = None,
    ):
        super().__init__(message, hint=hint)
        self.by_reason = by_reason
        self.accounting = accounting


def check_reject_rate(
    build_rejects: list[Reject], accounting: dict[str, dict[str, int]], max_rate: float
) -> None:
    """Raise :class:`RejectRateError` when, for any source, the inputs rejected at build
    time (``accounting[source]["build_failed"]``) exceed ``max_rate`` of those it found."""
    over = []
    for name, a in accounting.items():
        failed, found = a.get("build_failed", 0), a.get("found", 0)
        if failed and failed > max_rate * max(found, 1):
            over.append(f"{name}: {failed} of {found}")
    if not over:
        return
    by_reason = count_by_reason(r for r in build_rejects if r.stage == "build")
    top = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items(), key=lambda kv: -kv[1]))
    raise RejectRateError(
        f"build rejected more than {max_rate:.2%} of the inputs ({'; '.join(over)}; "
        f"reasons: {top})",
        by_reason=by_reason,
        accounting=accounting,
        hint="see rejects.parquet in --out; fix the cause and re-run to resume, "
        "or raise --max-reject-rate",
    )
