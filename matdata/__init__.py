"""matdata: trimap-free portrait-matting training data, from raw datasets to MODNet.

The core package holds pure array functions (compositing, trimaps, metrics), safe image
I/O, dataset sources, the record schema and shard readers/writers.  It never imports the
sibling packages ``pipelines``, ``harmonization`` or ``modnet``; only :mod:`matdata.cli`
wires them together.
"""

from matdata.errors import MatdataError

__version__ = "0.1.0"

__all__ = ["MatdataError", "__version__"]
