"""QA aggregation (client side): global flags, counts, the JSON summary and ``--fail-on``.

:func:`aggregate` merges the :class:`~matdata.qa.scan.ShardScan` results of every shard,
adds the flags that need the whole dataset, and returns a :class:`QAReport`:

* ``duplicate``: near-identical composites (pHash and dHash, :mod:`matdata.qa.phash`)
  under different keys; every member of a duplicate group is flagged.
* ``leakage``: a duplicate group spanning several splits, or one source foreground
  (``meta.fg.source`` + ``meta.fg.id``) or foreground group (``meta.fg.group``, e.g. one
  person) used in several splits; every record involved is flagged.

``summary.json`` (:meth:`QAReport.summary`) lists every flagged sample by key with its flags
and reasons, the flag counts, the shard problems, the counts and the build config.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matdata import jsonsafe
from matdata.errors import ConfigError
from matdata.qa.analysis import FLAGS, SHARD_FLAGS, Flag, Thresholds
from matdata.qa.phash import near_duplicate_groups

#: Numeric per-record statistics summarised in the JSON and plotted in the HTML.
METRICS = (
    "coverage",
    "fg_area",
    "semi_share",
    "unknown_share",
    "bbox_w",
    "bbox_h",
    "bbox_cx",
    "bbox_cy",
    "width",
    "height",
    "bg_diff",
    "color_shift",
    "halo",
)

#: Dimensions of the per-group breakdown: (row column, title).  ``kind`` is fine / coarse.
GROUP_DIMS = (
    ("fg_source", "foreground source"),
    ("bg_source", "background source"),
    ("kind", "fine / coarse"),
    ("harmonizer", "harmonizer"),
)
#: Sample strips shown per group value, and group values per dimension (largest first).
GROUP_SHEETS = 4
MAX_GROUPS = 12


def group_value(row: dict[str, Any], dim: str) -> str:
    """The group of ``row`` in dimension ``dim`` as text (``"(none)"`` when absent)."""
    if dim == "kind":
        return "coarse" if row.get("coarse") else "fine"
    v = row.get(dim)
    return "(none)" if v is None else str(v)


@dataclass
class QAReport:
    """Everything the HTML and JSON outputs need."""

    dataset: str
    index: dict[str, Any]
    rows: list[dict[str, Any]]
    shards: list[dict[str, Any]]  # every shard of dataset.json with its status
    rejects: list[dict[str, str]]
    thresholds: Thresholds
    sample_keys: list[str] = field(default_factory=list)
    thumbs: dict[str, bytes] = field(default_factory=dict)
    duplicate_groups: list[list[str]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    views: dict[str, Any] = field(default_factory=dict)  # key -> edges.RecordViews

    # ------------------------------------------------------------------ derived views
    @property
    def flagged(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["flags"]]

    def flag_counts(self) -> dict[str, int]:
        """``{flag: number of samples carrying it}`` for flags present at least once."""
        c: Counter[str] = Counter()
        for r in self.rows:
            c.update({f["flag"] for f in r["flags"]})
        return dict(sorted(c.items()))

    def shard_problems(self) -> list[dict[str, str]]:
        return [{"shard": s["path"], **p} for s in self.shards for p in s.get("problems", [])]

    def counts(self) -> dict[str, Any]:
        def by(key: str, default: str = "(none)") -> dict[str, int]:
            c = Counter(str(r.get(key)) if r.get(key) is not None else default for r in self.rows)
            return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

        kinds = Counter("coarse" if r.get("coarse") else "fine" for r in self.rows)
        return {
            "samples": len(self.rows),
            "expected_samples": int(self.index.get("samples", 0)),
            "by_split": by("split"),
            "by_fg_source": by("fg_source"),
            "by_bg_source": by("bg_source"),
            "by_bg_category": by("bg_category"),
            "by_kind": dict(sorted(kinds.items())),
            "by_harmonizer": by("harmonizer"),
        }

    def metric_summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for m in METRICS:
            v = np.array([r[m] for r in self.rows if r.get(m) is not None], np.float64)
            if v.size:
                p5, p50, p95 = np.percentile(v, [5, 50, 95])
                out[m] = {
                    "n": int(v.size),
                    "mean": float(v.mean()),
                    "min": float(v.min()),
                    "p5": float(p5),
                    "p50": float(p50),
                    "p95": float(p95),
                    "max": float(v.max()),
                }
        return out

    def groups(self, dim: str) -> dict[str, list[dict[str, Any]]]:
        """Rows by their group in ``dim`` (largest group first, then by name)."""
        by: dict[str, list[dict[str, Any]]] = {}
        for r in self.rows:
            by.setdefault(group_value(r, dim), []).append(r)
        return dict(sorted(by.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def breakdown(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{dim: {group: figures}}`` for every :data:`GROUP_DIMS` dimension: samples,
        flagged (count and share), each flag's count, and the median / p95 of the halo
        score and the median of the alpha statistics."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for dim, _ in GROUP_DIMS:
            out[dim] = {}
            for name, rows in self.groups(dim).items():
                flags: Counter[str] = Counter()
                for r in rows:
                    flags.update({f["flag"] for f in r["flags"]})
                n_flagged = sum(1 for r in rows if r["flags"])
                fig: dict[str, Any] = {
                    "samples": len(rows),
                    "flagged": n_flagged,
                    "share_flagged": n_flagged / len(rows),
                    "by_flag": dict(sorted(flags.items())),
                }
                for m, qs in (("halo", (50, 95)), ("coverage", (50,)), ("semi_share", (50,)),
                              ("unknown_share", (50,))):  # fmt: skip
                    v = np.array([r[m] for r in rows if r.get(m) is not None], np.float64)
                    for q in qs:
                        fig[f"{m}_p{q}"] = float(np.percentile(v, q)) if v.size else None
                out[dim][name] = fig
        return out

    def group_keys(self) -> dict[str, dict[str, list[str]]]:
        """Keys shown per group (``GROUP_SHEETS`` per group, ``MAX_GROUPS`` groups per
        dimension with at least two groups): the group's random-sample keys first, then
        its first records in reading order."""
        sampled = set(self.sample_keys)
        out: dict[str, dict[str, list[str]]] = {}
        for dim, _ in GROUP_DIMS:
            groups = self.groups(dim)
            if len(groups) < 2:
                continue
            out[dim] = {}
            for name, rows in list(groups.items())[:MAX_GROUPS]:
                keys = [r["key"] for r in rows if r["key"] in sampled]
                keys += [r["key"] for r in rows if r["key"] not in sampled]
                out[dim][name] = keys[:GROUP_SHEETS]
        return out

    def view_keys(self) -> list[str]:
        """Keys whose edge views the report shows: the random sample's first
        :data:`~matdata.qa.edges.MAX_EDGE_SAMPLE`, then the first
        :data:`~matdata.qa.edges.MAX_EDGE_FLAGGED` flagged records."""
        from matdata.qa.edges import MAX_EDGE_FLAGGED, MAX_EDGE_SAMPLE

        keys = self.sample_keys[:MAX_EDGE_SAMPLE]
        keys += [r["key"] for r in self.flagged[:MAX_EDGE_FLAGGED]]
        return list(dict.fromkeys(keys))

    def missing_media(self, max_flagged: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """``({shard: keys}, {shard: keys})`` of the strips and the edge views the report
        shows but the scan did not return (records flagged by global flags, per-group
        samples); a second pass fetches them.  Undecodable records are left out."""
        rows = {r["key"]: r for r in self.rows}
        want_strips = [r["key"] for r in self.flagged[:max_flagged]]
        want_strips += [k for g in self.group_keys().values() for ks in g.values() for k in ks]
        want_views = self.view_keys()
        strips: dict[str, list[str]] = {}
        views: dict[str, list[str]] = {}
        for want, have, out in ((want_strips, self.thumbs, strips),
                                (want_views, self.views, views)):  # fmt: skip
            for key in dict.fromkeys(want):
                row = rows[key]
                if key not in have and row.get("phash") is not None:
                    out.setdefault(row["shard"], []).append(key)
        return strips, views

    def rejects_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r["reason"] for r in self.rejects).items()))

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary written to ``summary.json``."""
        from matdata import __version__

        flagged = self.flagged
        n = len(self.rows)
        return {
            "dataset": self.dataset,
            "matdata_version": __version__,
            "counts": self.counts(),
            "flags": {
                "samples_flagged": len(flagged),
                "share_flagged": len(flagged) / n if n else 0.0,
                "by_flag": self.flag_counts(),
                "legend": {**FLAGS, **SHARD_FLAGS},
            },
            "flagged": [
                {
                    "key": r["key"],
                    "split": r["split"],
                    "shard": r.get("shard"),
                    "flags": r["flags"],
                }
                for r in flagged
            ],
            "shard_problems": self.shard_problems(),
            "duplicate_groups": self.duplicate_groups,
            "shards": self.shards,
            "metrics": self.metric_summary(),
            "breakdown": self.breakdown(),
            "rejects": {"total": len(self.rejects), "by_reason": self.rejects_by_reason()},
            "thresholds": self.thresholds.to_dict(),
            "sample_keys": self.sample_keys,
            "config": self.index.get("config", {}),
            "sources": self.index.get("sources", {}),
            "timing": self.timing,
        }


# ------------------------------------------------------------------------- aggregation


def _add(row: dict[str, Any], flag: Flag) -> None:
    if all(f["flag"] != flag.name for f in row["flags"]):
        row["flags"].append(flag.to_dict())


def _keys_text(keys: list[str], limit: int = 3) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def global_flags(rows: list[dict[str, Any]], th: Thresholds) -> list[list[str]]:
    """Add ``duplicate`` / ``leakage`` flags to ``rows`` in place; return duplicate groups."""
    hashed = [i for i, r in enumerate(rows) if r.get("phash") is not None]
    groups = near_duplicate_groups(
        [rows[i]["phash"] for i in hashed],
        [rows[i]["dhash"] for i in hashed],
        th.dup_phash,
        th.dup_dhash,
    )
    key_groups = []
    for g in groups:
        members = [rows[hashed[j]] for j in g]
        keys = [m["key"] for m in members]
        key_groups.append(keys)
        splits = sorted({m["split"] for m in members})
        for m in members:
            others = [k for k in keys if k != m["key"]]
            _add(m, Flag("duplicate", f"near-identical image under {_keys_text(others)}"))
            if len(splits) > 1:
                _add(m, Flag("leakage", f"same image in splits {'/'.join(splits)}: "
                             f"{_keys_text(others)}"))  # fmt: skip
    for col, what in (("fg_id", "source foreground"), ("fg_group", "foreground group")):
        by: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            if r.get(col) is not None:
                by.setdefault((str(r.get("fg_source")), str(r[col])), []).append(r)
        for (src, value), members in by.items():
            splits = sorted({m["split"] for m in members})
            if len(splits) > 1:
                for m in members:
                    _add(m, Flag("leakage", f"{what} {src}/{value} in splits {'/'.join(splits)}"))
    return key_groups


def aggregate(
    dataset: str,
    index: dict[str, Any],
    scans: list[Any],
    *,
    rejects: list[dict[str, str]] | None = None,
    thresholds: Thresholds | None = None,
    extra_shard_problems: dict[str, list[dict[str, str]]] | None = None,
    sample_keys: list[str] | None = None,
) -> QAReport:
    """Merge shard scans into a :class:`QAReport` (adds the global flags)."""
    th = thresholds or Thresholds()
    scans = sorted(scans, key=lambda s: (s.shard["split"], s.shard["index"]))
    rows = [r for s in scans for r in s.rows]
    thumbs: dict[str, bytes] = {}
    views: dict[str, Any] = {}
    for s in scans:
        thumbs.update(s.thumbs)
        views.update(getattr(s, "views", {}))
    groups = global_flags(rows, th)
    status = {s.shard["path"]: s for s in scans}
    extra = extra_shard_problems or {}
    shards = []
    for d in index.get("shards", []):
        scan = status.get(d["path"])
        problems = list(scan.problems) if scan is not None else list(extra.get(d["path"], []))
        shards.append(
            {
                **d,
                "scanned": scan is not None,
                "records_read": scan.records if scan is not None else None,
                "problems": problems,
            }
        )
    report = QAReport(
        dataset=dataset,
        index=index,
        rows=rows,
        shards=shards,
        rejects=list(rejects or []),
        thresholds=th,
        sample_keys=list(sample_keys or []),
        thumbs=thumbs,
        duplicate_groups=groups,
        timing={"scan_seconds": float(sum(s.seconds for s in scans))},
        views=views,
    )
    shown = set(report.view_keys())  # bound what the client holds to what is shown
    report.views = {k: v for k, v in views.items() if k in shown}
    return report


# ---------------------------------------------------------------------------- fail-on

_RULE_RE = re.compile(r"^flagged\s*>\s*([0-9]*\.?[0-9]+)\s*(%?)$")
_RULE_ALIASES = {"duplicates": "duplicate", "checksum": "checksum"}


def parse_rule(rule: str) -> tuple[str, Any]:
    """``(kind, value)`` of one ``--fail-on`` rule; :class:`ConfigError` if unknown.

    Rules: ``duplicates``, ``leakage``, ``checksum`` (any shard or record checksum /
    missing / unreadable shard problem), ``flagged>X%`` (share of flagged samples above
    X percent), ``flagged>N`` (more than N flagged samples), or any flag name.
    """
    r = rule.strip()
    m = _RULE_RE.match(r)
    if m:
        value = float(m.group(1))
        return ("flagged_pct", value) if m.group(2) else ("flagged_n", value)
    if r == "checksum":
        return ("checksum", None)
    name = _RULE_ALIASES.get(r, r)
    if name in FLAGS or name in SHARD_FLAGS:
        return ("flag", name)
    raise ConfigError(
        f"unknown --fail-on rule {rule!r}",
        hint="use duplicates, leakage, checksum, flagged>X%, flagged>N or a flag name: "
        + ", ".join(sorted({*FLAGS, *SHARD_FLAGS})),
    )


def check_fail_on(summary: dict[str, Any], rules: list[str]) -> list[str]:
    """One line per triggered rule (empty list = all rules pass)."""
    out = []
    by_flag = summary["flags"]["by_flag"]
    n_flagged = summary["flags"]["samples_flagged"]
    share = summary["flags"]["share_flagged"]
    shard_probs = Counter(p["flag"] for p in summary["shard_problems"])
    for rule in rules:
        kind, value = parse_rule(rule)
        if kind == "flagged_pct" and share * 100 > value:
            out.append(f"{rule}: {n_flagged} samples flagged ({share:.2%} > {value}%)")
        elif kind == "flagged_n" and n_flagged > value:
            out.append(f"{rule}: {n_flagged} samples flagged (> {value:g})")
        elif kind == "checksum":
            n = sum(shard_probs.values())
            if n or by_flag.get("checksum_mismatch"):
                what = ", ".join(f"{v} {k}" for k, v in sorted(shard_probs.items()))
                out.append(f"{rule}: shard problems: {what or 'checksum mismatch'}")
        elif kind == "flag":
            n = by_flag.get(value, 0) + shard_probs.get(value, 0)
            if n:
                out.append(f"{rule}: {n} x {value}")
    return out


def write_summary(report: QAReport, path: str) -> dict[str, Any]:
    """Write ``summary.json`` atomically and return the summary."""
    from matdata.storage import atomic_write_text

    summary = report.summary()
    text = jsonsafe.dumps(summary, indent=2, sort_keys=False, default=str)
    atomic_write_text(path, text + "\n")
    return summary
