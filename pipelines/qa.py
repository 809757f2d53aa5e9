"""The QA Dask graph: one task per shard, aggregation in the client.

Each task (:func:`matdata.qa.scan.scan_shard`) streams one shard and returns small
per-record rows (statistics, flags, hashes) and contact-sheet strips of a bounded set of
records, so the client never holds images beyond those strips.  Shards of the format
that is not scanned (when a dataset has both) are only re-hashed.  Flags that need the
whole dataset (duplicates, leakage) are computed in the client; a second, small pass
fetches strips of the records they flag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from matdata.qa.analysis import Thresholds
from matdata.qa.report import QAReport, aggregate

#: Progress callback: ``(records_done, shards_done)`` increments.
Progress = Callable[[int, int], None]


def _hash_only(dataset_dir: str, shard: Any) -> list[dict[str, str]]:
    from matdata.shards import shard_ok

    problem = shard_ok(dataset_dir, shard)
    if problem is None:
        return []
    name = "missing_shard" if problem.endswith(": missing") else "checksum_mismatch"
    return [{"flag": name, "reason": problem}]


def run_qa(
    dataset_dir: str,
    *,
    sample: int = 48,
    seed: int = 0,
    thresholds: Thresholds | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    in_process: bool = False,
    max_flagged_strips: int = 200,
    band_sample: int = 2000,
    progress: Progress | None = None,
) -> QAReport:
    """QA a built dataset; returns the aggregated :class:`QAReport` (nothing written).

    ``in_process=True`` runs the same shard tasks sequentially in this process (no Dask):
    for small datasets, debugging and tests.  Otherwise a Dask client from
    :func:`pipelines.cluster.dask_client` (``workers`` / ``scheduler``) runs them.
    Records without a stored trimap get their unknown-band area computed on a random
    subset of ``band_sample`` records (all of them in a smaller dataset).
    """
    from matdata.qa.scan import sample_plan, scan_shard, shard_strips, shard_views
    from matdata.rejects import read_rejects
    from matdata.shards import REJECTS_NAME, ShardInfo, list_shards, read_index
    from matdata.storage import exists, join

    th = thresholds or Thresholds()
    index = read_index(dataset_dir)
    shards = list_shards(dataset_dir)
    scanned = {s.path for s in shards}
    others = [ShardInfo.from_dict(d) for d in index.get("shards", []) if d["path"] not in scanned]
    plan = sample_plan(shards, sample, seed)
    n_total = sum(s.samples for s in shards)
    band = sample_plan(shards, band_sample, seed + 1) if n_total > band_sample else None
    rejects_path = join(dataset_dir, REJECTS_NAME)
    rejects = [r.to_dict() for r in read_rejects(rejects_path)] if exists(rejects_path) else []
    tick = progress or (lambda _r, _s: None)

    def scan(s: Any) -> Any:
        return scan_shard(
            dataset_dir, s, plan[s.path], th, band=None if band is None else band[s.path]
        )

    def strips(s_keys: tuple[Any, list[str]]) -> dict[str, bytes]:
        return shard_strips(dataset_dir, s_keys[0], s_keys[1])

    def views(s_keys: tuple[Any, list[str]]) -> dict[str, Any]:
        return shard_views(dataset_dir, s_keys[0], s_keys[1])

    def execute(unordered: Any, ordered: Any) -> QAReport:
        scans = []
        for res in unordered(scan, shards):
            scans.append(res)
            tick(res.records, 1)
        hashed = ordered(lambda s: _hash_only(dataset_dir, s), others)
        extra = {s.path: p for s, p in zip(others, hashed, strict=True)}
        report = _finish(dataset_dir, index, scans, rejects, th, extra, plan, shards)
        # second pass: strips and edge views of records flagged by global flags
        # (duplicates, leakage) and of the per-group samples
        missing, missing_views = report.missing_media(max_flagged_strips)
        by_path = {s.path: s for s in shards}
        for got in ordered(strips, [(by_path[p], keys) for p, keys in missing.items()]):
            report.thumbs.update(got)
        for got in ordered(views, [(by_path[p], keys) for p, keys in missing_views.items()]):
            report.views.update(got)
        return report

    if in_process:
        return execute(lambda fn, xs: (fn(x) for x in xs), lambda fn, xs: [fn(x) for x in xs])

    from distributed import as_completed

    from pipelines.cluster import dask_client

    with dask_client(workers, scheduler) as client:

        def unordered(fn: Any, xs: list[Any]) -> Any:
            futures = [client.submit(fn, x, pure=False) for x in xs]
            return (f.result() for f in as_completed(futures))

        def ordered(fn: Any, xs: list[Any]) -> list[Any]:
            return client.gather([client.submit(fn, x, pure=False) for x in xs])

        return execute(unordered, ordered)


def _finish(
    dataset_dir: str,
    index: dict[str, Any],
    scans: list[Any],
    rejects: list[dict[str, str]],
    th: Thresholds,
    extra: dict[str, list[dict[str, str]]],
    plan: dict[str, list[int]],
    shards: list[Any],
) -> QAReport:
    pos = {(r["shard"], r["position"]): r["key"] for s in scans for r in s.rows}
    sample_keys = [pos[(s.path, i)] for s in shards for i in plan[s.path] if (s.path, i) in pos]
    return aggregate(
        dataset_dir,
        index,
        scans,
        rejects=rejects,
        thresholds=th,
        extra_shard_problems=extra,
        sample_keys=sample_keys,
    )


def run_compare(report_a: QAReport, dataset_b: str, out_dir: str, **qa: Any) -> dict[str, Any]:
    """QA ``dataset_b`` (``qa``: the keyword arguments of :func:`run_qa`), compare it with
    ``report_a`` key by key and write ``compare.html`` / ``compare.json`` into
    ``out_dir`` (:mod:`matdata.qa.compare`); returns the JSON."""
    from matdata.qa.compare import compare, fetch_views, write_compare

    report_b = run_qa(dataset_b, **qa)
    cmp = compare(report_a, report_b)
    cmp.views_a = fetch_views(report_a.dataset, report_a, cmp.pair_keys)
    cmp.views_b = fetch_views(dataset_b, report_b, cmp.pair_keys)
    return write_compare(cmp, out_dir)
