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
    import json

    from matdata.qa.html import write_html
    from matdata.qa.report import write_summary
    from matdata.storage import atomic_write_text, join, makedirs

    makedirs(out_dir)
    summary = write_summary(report, join(out_dir, SUMMARY_NAME))
    lines = (json.dumps(r, sort_keys=True, default=str) for r in report.rows)
    atomic_write_text(join(out_dir, RECORDS_NAME), "".join(line + "\n" for line in lines))
    write_html(report, join(out_dir, HTML_NAME))
    return summary


__all__ = [
    "FLAGS",
    "SHARD_FLAGS",
    "Flag",
    "QAReport",
    "Thresholds",
    "aggregate",
    "check_fail_on",
    "parse_rule",
    "write_report",
]
