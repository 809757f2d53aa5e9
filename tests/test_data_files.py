"""The kept test data is what tests/data/README.md says it is: every file listed with its
sha256, none regenerated (a reference output recomputed with this project's own code
would turn an independent check into change detection)."""

from __future__ import annotations

import hashlib
from pathlib import Path

DATA = Path(__file__).parent / "data"
DOCS = {DATA / "README.md", DATA / "specs" / "README.md"}


def _sums() -> dict[Path, str]:
    out: dict[Path, str] = {}
    for sums in DATA.rglob("SHA256SUMS"):
        for line in sums.read_text().splitlines():
            digest, name = line.split(maxsplit=1)
            out[sums.parent / name] = digest
    return out


def test_every_data_file_is_documented_and_unchanged() -> None:
    sums = _sums()
    files = {p for p in DATA.rglob("*") if p.is_file() and p.name != "SHA256SUMS"} - DOCS
    assert files == set(sums), "undocumented or missing test data (see tests/data/README.md)"
    for path, digest in sums.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path
    assert len([p for p in files if p.suffix == ".npz"]) >= 15
