"""Dataset sources: AISegment, Supervisely Person, Places365, plain folders and the demo."""

from matdata.sources.base import (
    REGISTRY,
    Foreground,
    Item,
    ScanResult,
    Source,
    assign_split,
    make_source,
    read_manifest,
    source_class,
)

__all__ = [
    "REGISTRY",
    "Foreground",
    "Item",
    "ScanResult",
    "Source",
    "assign_split",
    "make_source",
    "read_manifest",
    "source_class",
]
