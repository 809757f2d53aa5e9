"""Writing training state safely: atomic checkpoints, and the bad-record list of a run.

A checkpoint is serialised into a temporary sibling and renamed over the target only when
complete (:func:`matdata.storage.atomic_open`), so a full disk or a killed process leaves
the previous checkpoint as it was; the failure is one :class:`CheckpointError` line.
"""

from __future__ import annotations

import json
import os
from typing import Any

from matdata.errors import CheckpointError, DatasetError

#: Undecodable records a run skipped, one JSON object per line: ``{key, shard, reason,
#: detail}`` (in the run directory).
BAD_RECORDS_NAME = "bad_records.jsonl"


def save_state(state: dict[str, Any], target: str) -> None:
    """``torch.save(state)`` to ``target`` atomically; one-line error if it cannot be written."""
    import torch

    from matdata.storage import atomic_open

    try:
        with atomic_open(target, "wb") as f:
            torch.save(state, f)
    except (OSError, RuntimeError) as exc:  # torch wraps write errors in RuntimeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reason = reason.strip().splitlines()[0][:200] if reason.strip() else type(exc).__name__
        raise CheckpointError(
            f"could not write checkpoint {target}: {reason}",
            hint="free disk space (or fix the run directory) and resume; "
            "the previous checkpoint is unchanged",
        ) from exc


def note_bad_records(
    run_dir: str, bad: list[dict[str, str]], seen: set[tuple[str, str]], limit: int
) -> None:
    """Append the records in ``bad`` not ``seen`` before to ``RUN/bad_records.jsonl`` and
    raise :class:`DatasetError` once more than ``limit`` distinct records were bad."""
    from matdata.storage import join

    new = []
    for b in bad:
        ident = (str(b.get("shard")), str(b.get("key")))
        if ident not in seen:
            seen.add(ident)
            new.append(b)
    if new:
        path = join(run_dir, BAD_RECORDS_NAME)
        text = "".join(json.dumps(b, sort_keys=True) + "\n" for b in new)
        if "://" in path:  # pragma: no cover - remote run directories: append is emulated
            import fsspec

            with fsspec.open(path, "ab") as f:
                f.write(text.encode())
        else:
            os.makedirs(run_dir, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
    if len(seen) > limit:
        first = next(iter(sorted(seen)))
        raise DatasetError(
            f"{len(seen)} undecodable records, more than --max-bad-records {limit} "
            f"(e.g. {first[1]} in {first[0]}); they are listed in "
            f"{join(run_dir, BAD_RECORDS_NAME)}",
            hint="repair or rebuild the dataset, or raise --max-bad-records",
        )
