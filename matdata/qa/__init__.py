"""Dataset QA: per-record statistics and flags, perceptual hashes, aggregation, and the
self-contained HTML report plus ``summary.json`` (see ``docs/qa.md``).

Layers: :mod:`~matdata.qa.analysis` and :mod:`~matdata.qa.phash` are pure functions on
arrays; :mod:`~matdata.qa.scan` reads one shard (a runner task in ``pipelines.qa``);
:mod:`~matdata.qa.report` aggregates in the client; :mod:`~matdata.qa.html` and
:mod:`~matdata.qa.plots` render.
"""

from __future__ import annotations

from matdata.qa.analysis import FLAGS, SHARD_FLAGS, Flag, Thresholds
from matdata.qa.report import QAReport, aggregate, check_fail_on, parse_rule

HTML_NAME = "report.html"
SUMMARY_NAME = "summary.json"
RECORDS_NAME = "records.jsonl"


def write_report(report: QAReport, out_dir: str) -> dict:
    """Write ``report.html``, ``summary.json`` and ``records.jsonl`` (every record's stats
    and flags, one JSON object a line) into ``out_dir``; return the summary."""
    from matdata import jsonsafe
    from matdata.qa.html import write_html
    from matdata.qa.report import write_summary
    from matdata.storage import atomic_write_text, join, makedirs

    makedirs(out_dir)
    summary = write_summary(report, join(out_dir, SUMMARY_NAME))
    lines = (jsonsafe.dumps(r, sort_keys=True, default=str) for r in report.rows)
    atomic_write_text(join(out_dir, RECORDS_NAME), "".join(line + "\n" for line in lines))
    write_html(report, join(out_dir, HTML_NAME))
    return summary


def check_report_dir(dataset: str, report_dir: str) -> None:
    """A report goes beside the dataset, never into it (the dataset would no longer
    verify): a :class:`~matdata.errors.ConfigError` when ``report_dir`` is ``dataset`` or
    lies inside it (paths resolved; URLs compared as text)."""
    import os

    from matdata.errors import ConfigError

    if "://" in dataset or "://" in report_dir:
        same = dataset.rstrip("/") == report_dir.rstrip("/")
        inside = report_dir.startswith(dataset.rstrip("/") + "/")
    else:
        d, r = os.path.realpath(dataset), os.path.realpath(report_dir)
        same, inside = d == r, r.startswith(d + os.sep)
    if same or inside:
        raise ConfigError(
            f"qa --out {report_dir} is {'the dataset directory' if same else 'inside the dataset'}"
            f" {dataset}; the report must go elsewhere (e.g. --out {dataset.rstrip('/')}-qa)"
        )


__all__ = [
    "FLAGS",
    "SHARD_FLAGS",
    "Flag",
    "QAReport",
    "Thresholds",
    "aggregate",
    "check_fail_on",
    "check_report_dir",
    "parse_rule",
    "write_report",
]
