"""Dataset sources: AISegment, Supervisely Person, Places365, plain folders and the demo."""

from matdata.sources.base import (
    REGISTRY,
    SOURCES,
    Foreground,
    Item,
    ScanResult,
    Source,
    assign_split,
    create_source,
    make_source,
    read_manifest,
    source_class,
)

__all__ = [
    "REGISTRY",
    "SOURCES",
    "Foreground",
    "Item",
    "ScanResult",
    "Source",
    "assign_split",
    "create_source",
    "make_source",
    "read_manifest",
    "source_class",
]
