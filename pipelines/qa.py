"""The QA pipeline: one task per shard on the shared runner, the report in the client.

Each task (:func:`qa_shard` on a :class:`QATask`) is run by
:func:`pipelines.runner.run_shards`, the runner build and harmonize use, or one after the
other in this process (``in_process``).  A ``scan`` task (:func:`matdata.qa.scan.scan_shard`)
streams one shard once and returns small per-record rows (statistics, flags, hashes) and
contact-sheet strips and edge views of a bounded set of records, so the client never
holds images beyond those.  Shards of the format that is not scanned (when a dataset has
both) get a ``hash`` task (checksum only).  The reduction over all shards (duplicates,
leakage, counts: :func:`matdata.qa.report.aggregate`) runs in the client once every scan
is back; a second, small round of ``media`` tasks then fetches strips and edge views of
the records that the global flags and the per-group samples add.

QA writes nothing next to the dataset, so the runner's other stages (output lock,
``prepare_output``, markers) do not apply: a rerun scans again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from matdata.qa.analysis import Thresholds
from matdata.qa.report import QAReport, aggregate
from matdata.qa.scan import ShardScan

#: Progress callback: ``(records_done, shards_done)`` increments.
Progress = Callable[[int, int], None]
#: Runs a list of tasks and returns their results in task order.
Run = Callable[[list["QATask"], bool], list[ShardScan]]


@dataclass(frozen=True)
class QATask:
    """One shard's QA work (small and picklable: what the runner submits).

    ``mode``: ``"scan"`` (stats, flags, hashes, strips and views of ``sample``; unknown
    band at ``band``, None = every record), ``"hash"`` (checksum only) or ``"media"``
    (strips of ``strips`` and edge views of ``views``, by key)."""

    name: str  # the shard's path: unique, names a failure
    samples: int  # records the task reads (the progress total; 0: not counted)
    dataset: str
    shard: Any  # matdata.shards.ShardInfo
    mode: str = "scan"
    thresholds: Thresholds = Thresholds()
    sample: tuple[int, ...] = ()
    band: tuple[int, ...] | None = None
    strips: tuple[str, ...] = ()
    views: tuple[str, ...] = ()


def qa_shard(task: QATask, progress: Callable[[int], None] | None = None) -> ShardScan:
    """The per-shard function the runner calls (``progress(n)``: n more records read)."""
    from matdata.qa.scan import scan_shard, shard_strips, shard_views

    if task.mode == "scan":
        return scan_shard(
            task.dataset, task.shard, task.sample, task.thresholds, band=task.band,
            progress=progress,
        )  # fmt: skip
    res = ShardScan(shard=task.shard.to_dict())
    if task.mode == "hash":
        res.problems = _hash_only(task.dataset, task.shard)
    elif task.mode == "media":
        if task.strips:
            res.thumbs = shard_strips(task.dataset, task.shard, task.strips)
        if task.views:
            res.views = shard_views(task.dataset, task.shard, task.views)
    else:
        raise ValueError(f"unknown QA task mode {task.mode!r}")
    return res


def _hash_only(dataset_dir: str, shard: Any) -> list[dict[str, str]]:
    from matdata.shards import shard_ok

    problem = shard_ok(dataset_dir, shard)
    if problem is None:
        return []
    name = "missing_shard" if problem.endswith(": missing") else "checksum_mismatch"
    return [{"flag": name, "reason": problem}]


# ----------------------------------------------------------------------------- planning


@dataclass
class QAPlan:
    """What to scan: the shards of the scanned format, the others (hash only), the random
    sample (strips and views) and the records that get the unknown band."""

    dataset: str
    index: dict[str, Any]
    shards: list[Any]  # scanned (ShardInfo)
    others: list[Any]  # the format not scanned: hash only
    sample: dict[str, list[int]]  # shard path -> positions
    band: dict[str, list[int]] | None  # shard path -> positions (None: every record)
    rejects: list[dict[str, str]]

    def scan_tasks(self, th: Thresholds) -> list[QATask]:
        scans = [
            QATask(
                name=s.path, samples=s.samples, dataset=self.dataset, shard=s, mode="scan",
                thresholds=th, sample=tuple(self.sample[s.path]),
                band=None if self.band is None else tuple(self.band[s.path]),
            )
            for s in self.shards
        ]  # fmt: skip
        hashes = [QATask(s.path, 0, self.dataset, s, mode="hash") for s in self.others]
        return scans + hashes

    def sample_keys(self, scans: list[ShardScan]) -> list[str]:
        """Keys of the random sample, in shard and position order."""
        pos = {(r["shard"], r["position"]): r["key"] for s in scans for r in s.rows}
        return [
            pos[(s.path, i)] for s in self.shards for i in self.sample[s.path] if (s.path, i) in pos
        ]


def plan_qa(dataset_dir: str, sample: int = 48, seed: int = 0, band_sample: int = 2000) -> QAPlan:
    """The :class:`QAPlan` of a dataset (reads ``dataset.json`` and the rejects file)."""
    from matdata.qa.scan import sample_plan
    from matdata.rejects import read_rejects
    from matdata.shards import REJECTS_NAME, ShardInfo, list_shards, read_index
    from matdata.storage import exists, join

    index = read_index(dataset_dir)
    shards = list_shards(dataset_dir)
    scanned = {s.path for s in shards}
    others = [ShardInfo.from_dict(d) for d in index.get("shards", []) if d["path"] not in scanned]
    n_total = sum(s.samples for s in shards)
    rejects_path = join(dataset_dir, REJECTS_NAME)
    rejects = [r.to_dict() for r in read_rejects(rejects_path)] if exists(rejects_path) else []
    return QAPlan(
        dataset=dataset_dir,
        index=index,
        shards=shards,
        others=others,
        sample=sample_plan(shards, sample, seed),
        band=sample_plan(shards, band_sample, seed + 1) if n_total > band_sample else None,
        rejects=rejects,
    )


# ------------------------------------------------------------------------------ running


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
    show_progress: bool = False,
    console: Console | None = None,
) -> QAReport:
    """QA a built dataset; returns the aggregated :class:`QAReport` (nothing written).

    ``in_process=True`` runs the same shard tasks one after the other in this process (no
    Dask): for small datasets, debugging and tests.  Otherwise
    :func:`pipelines.runner.run_shards` runs them on a local cluster of ``workers`` (one
    cluster for both rounds) or on ``scheduler``, drawing its progress bar on ``console``
    when ``show_progress``.  ``progress(records, shards)`` is called for every scanned
    shard: as it finishes in process, once the round is over on Dask.  Records without a
    stored trimap get their unknown-band area computed on a random subset of
    ``band_sample`` records (all of them in a smaller dataset).
    """
    th = thresholds or Thresholds()
    plan = plan_qa(dataset_dir, sample, seed, band_sample)
    tick = progress or (lambda _r, _s: None)
    with _runner(in_process, workers, scheduler, console, show_progress, tick) as run:
        results = run(plan.scan_tasks(th), True)
        scans = results[: len(plan.shards)]
        hashed = results[len(plan.shards) :]
        if not in_process:
            for res in scans:
                tick(res.records, 1)
        report = aggregate(
            dataset_dir,
            plan.index,
            scans,
            rejects=plan.rejects,
            thresholds=th,
            extra_shard_problems={
                s.path: r.problems for s, r in zip(plan.others, hashed, strict=True)
            },
            sample_keys=plan.sample_keys(scans),
        )
        _second_pass(report, plan, max_flagged_strips, run)
    return report


def _second_pass(report: QAReport, plan: QAPlan, max_flagged: int, run: Run) -> None:
    """Strips and edge views of the records the report shows but the scan did not return
    (records flagged by global flags, per-group samples): one ``media`` task per shard."""
    strips, views = report.missing_media(max_flagged)
    tasks = [
        QATask(
            s.path, 0, plan.dataset, s, mode="media",
            strips=tuple(strips.get(s.path, ())), views=tuple(views.get(s.path, ())),
        )
        for s in plan.shards
        if s.path in strips or s.path in views
    ]  # fmt: skip
    for res in run(tasks, False) if tasks else []:
        report.thumbs.update(res.thumbs)
        report.views.update(res.views)


@contextlib.contextmanager
def _runner(
    in_process: bool,
    workers: int | None,
    scheduler: str | None,
    console: Console | None,
    show_progress: bool,
    tick: Progress,
) -> Iterator[Run]:
    """Yield ``run(tasks, counted)``: in this process, or on the shared runner with one
    Dask cluster for every round (started here unless ``scheduler`` names one)."""
    if in_process:

        def run_here(tasks: list[QATask], counted: bool) -> list[ShardScan]:
            out = []
            for t in tasks:
                out.append(qa_shard(t))
                if counted and t.mode == "scan":
                    tick(out[-1].records, 1)
            return out

        yield run_here
        return

    from pipelines.runner import run_shards

    def run_on(address: str | None) -> Run:
        def run(tasks: list[QATask], counted: bool) -> list[ShardScan]:
            return run_shards(
                tasks, qa_shard, label="[bold]qa[/]" if counted else "[bold]qa[/] strips",
                workers=workers, scheduler=address, console=console,
                progress=show_progress and counted,
            )  # fmt: skip

        return run

    if scheduler:
        yield run_on(scheduler)
        return
    from pipelines.cluster import dask_client

    with dask_client(workers) as client:
        yield run_on(client.scheduler.address)


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
