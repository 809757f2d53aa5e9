"""Load a MODNet backbone from any checkpoint that contains one, whatever its key layout.

Users have backbones in many files: torchvision classification checkpoints
(``features.N...`` for MobileNetV2, ``conv1``/``layer1...`` for ResNet-18),
segmentation_models_pytorch models (``encoder.*``), full UNet / DeepLabv3(+) state_dicts
(``backbone.*`` or ``encoder.*`` next to decoder keys), MODNet's official
``mobilenetv2_human_seg.ckpt`` (a bare MobileNetV2 of the MODNet repository:
``features.N.conv.M.*``), MODNet checkpoints themselves and the checkpoints of
``matdata train --task segmentation``.

How a file is matched (:func:`match_backbone`):

1. The file is read with ``torch.load(weights_only=True)``
   (:func:`matdata.checkpoints.read_state_dict`): wrappers such as ``{"state_dict": ...}`` or a
   training checkpoint's ``{"model": ...}`` are unwrapped, a ``module.`` prefix is dropped.
2. Every key is split at each dot into *prefix* + *suffix*; a suffix is renamed by each key
   *layout* the backbone knows (for MobileNetV2: MODNet's own flat ``conv.M`` numbering and
   torchvision's nested ``conv.A.B`` numbering) and kept when it names a backbone tensor.
   Keys sharing one (layout, prefix) form a candidate group.
3. The groups that hold every backbone tensor (``num_batches_tracked`` counters are optional,
   old checkpoints lack them) are the copies of the backbone in the file.  One copy is taken.
   Several copies are fine only when their values are identical (MODNet lists its shared
   backbone twice); otherwise the file is ambiguous and the load fails naming both prefixes.
4. Shapes must match; under the taken prefix, a key of a backbone module that has no place in
   this backbone (e.g. ``layer1.2.*`` of a ResNet-34) is an error, not a silent skip.
   Everything else (decoders, heads, classifiers) is ignored and reported.

Failures are :class:`~matdata.errors.CheckpointError` naming the missing, mis-shaped or
duplicated keys.  :class:`BackboneLoad` tells what was taken and what was ignored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from matdata.errors import CheckpointError

Renamer = Callable[[str], "str | None"]

_COUNTER = "num_batches_tracked"


# ------------------------------------------------------------------ layouts


def _identity(suffix: str) -> str | None:
    return suffix


_TV_BLOCK = re.compile(r"^features\.(\d+)\.conv\.(\d+)(?:\.(\d+))?\.(\w+)$")


def _torchvision_mobilenetv2(suffix: str) -> str | None:
    """torchvision's MobileNetV2 names -> MODNet's (the official repository's) names.

    torchvision nests conv+BN+ReLU6 triples inside each inverted residual block
    (``conv.0.0`` conv, ``conv.0.1`` BN, ``conv.1.0``/``conv.1.1`` the depthwise pair when the
    block expands, then ``conv.2``/``conv.3`` the projection); MODNet's blocks are one flat
    Sequential (``conv.0, conv.1`` | ``conv.3, conv.4`` | ``conv.6, conv.7``, ReLU6 at 2 and
    5).  Stem (``features.0.0/1``) and last conv (``features.18.0/1``) are the same in both.
    Keys of blocks in MODNet's flat numbering return ``None`` (another layout's keys).
    """
    m = _TV_BLOCK.match(suffix)
    if m is None:
        return suffix if not re.match(r"^features\.\d+\.conv\.", suffix) else None
    block, a, b, leaf = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    # torchvision: expanding blocks have CNA(0), CNA(1), conv(2), bn(3);
    # non-expanding ones (block 1) have CNA(0), conv(1), bn(2).
    expanding = int(block) != 1
    if b is not None:  # inside a conv+BN+ReLU6 triple: a = triple, b = 0 conv / 1 BN
        flat = 3 * a + int(b)
    else:  # projection conv and its BN
        triples = 2 if expanding else 1
        if a < triples:
            return None
        flat = 3 * triples + (a - triples)
    return f"features.{block}.conv.{flat}.{leaf}"


#: Per backbone: the key layouts understood, as (name, renamer).  The renamer maps a key
#: suffix to the backbone's ``model.``-relative name (or ``None``).
LAYOUTS: dict[str, tuple[tuple[str, Renamer], ...]] = {
    "mobilenetv2": (
        ("MobileNetV2 (MODNet / official layout)", _identity),
        ("MobileNetV2 (torchvision layout)", _torchvision_mobilenetv2),
    ),
    "resnet18": (("ResNet-18 (torchvision layout)", _identity),),
    "pvt": (("PVT (matdata layout)", _identity),),
}


# ------------------------------------------------------------------ matching


@dataclass
class BackboneLoad:
    """What :func:`load_backbone` took from a file and what it ignored."""

    source: str
    layout: str
    prefix: str
    taken: int  # tensors copied into the backbone
    parameters: int  # numbers in those tensors
    duplicates: list[str] = field(default_factory=list)  # prefixes of identical extra copies
    ignored: list[str] = field(default_factory=list)  # file keys not used
    kept_counters: int = 0  # num_batches_tracked absent from the file (left as they were)

    def ignored_groups(self, depth: int = 2) -> Counter[str]:
        """Ignored keys counted by their first ``depth`` name components (``decoder.blocks``)."""
        return Counter(".".join(k.split(".")[:depth]) + ".*" for k in self.ignored)

    def lines(self) -> list[str]:
        """Human-readable summary (what the CLI prints)."""
        where = repr(self.prefix) if self.prefix else "the top level"
        out = [
            f"backbone weights {self.source}: took {self.taken} tensors "
            f"({self.parameters:,} values) from {where}, {self.layout}"
        ]
        if self.duplicates:
            out.append("  identical copies not used: " + ", ".join(map(repr, self.duplicates)))
        if self.kept_counters:
            out.append(f"  {self.kept_counters} BatchNorm counters not in the file (kept at 0)")
        if self.ignored:
            groups = self.ignored_groups()
            shown = ", ".join(f"{g} ({n})" for g, n in sorted(groups.items())[:8])
            more = f" (+{len(groups) - 8} more groups)" if len(groups) > 8 else ""
            out.append(f"  ignored {len(self.ignored)} keys: {shown}{more}")
        else:
            out.append("  ignored nothing")
        return out


@dataclass
class _Group:
    layout: str
    prefix: str
    pairs: dict[str, str] = field(default_factory=dict)  # target -> file key


def _top_names(targets: set[str]) -> set[str]:
    return {t.split(".")[0] for t in targets}


def match_backbone(
    backbone: nn.Module, state: Mapping[str, Any], source: str = "<state_dict>"
) -> tuple[dict[str, torch.Tensor], BackboneLoad]:
    """Find ``backbone``'s tensors in ``state`` (see the module docstring).

    Returns the backbone state_dict to load (``model.``-prefixed, as the backbone names
    its keys; ``num_batches_tracked`` may be absent) and the report.
    """
    name = getattr(backbone, "name", type(backbone).__name__)
    layouts = LAYOUTS.get(name, (("own layout", _identity),))
    own = {k[len("model.") :]: v for k, v in backbone.state_dict().items()}
    wanted = set(own)
    required = {k for k in wanted if not k.endswith(_COUNTER)}

    groups = _candidate_groups(state, layouts, wanted)
    complete = [g for g in groups.values() if required <= set(g.pairs)]
    if not complete:
        _raise_incomplete(name, groups, required, state, source)
    # shortest prefix first: the backbone itself rather than a copy nested deeper
    complete.sort(key=lambda g: (len(g.prefix), g.prefix, g.layout))
    chosen = complete[0]
    duplicates = _identical_copies(chosen, complete[1:], state, required, name, source)
    _check_shapes(chosen, state, own, name, source)
    used = set(chosen.pairs.values())
    for other in complete[1:]:
        used |= set(other.pairs.values()) if other.prefix in duplicates else set()
    _check_no_strays(chosen, state, used, name, source)

    out = {"model." + t: state[k] for t, k in chosen.pairs.items()}
    report = BackboneLoad(
        source=source,
        layout=chosen.layout,
        prefix=chosen.prefix,
        taken=len(out),
        parameters=sum(int(v.numel()) for v in out.values()),
        duplicates=duplicates,
        ignored=[k for k in state if k not in used],
        kept_counters=len(wanted - set(chosen.pairs)),
    )
    return out, report


def _candidate_groups(
    state: Mapping[str, Any], layouts: tuple[tuple[str, Renamer], ...], wanted: set[str]
) -> dict[tuple[str, str], _Group]:
    """Every (layout, prefix) under which some keys of ``state`` name backbone tensors,
    with those keys (the first key found for each tensor)."""
    groups: dict[tuple[str, str], _Group] = {}
    for key in state:
        parts = key.split(".")
        for i in range(len(parts)):
            prefix = ".".join(parts[:i]) + ("." if i else "")
            suffix = ".".join(parts[i:])
            for lname, rename in layouts:
                target = rename(suffix)
                if target is not None and target in wanted:
                    g = groups.setdefault((lname, prefix), _Group(lname, prefix))
                    g.pairs.setdefault(target, key)
    return groups


def _identical_copies(
    chosen: _Group,
    others: list[_Group],
    state: Mapping[str, Any],
    required: set[str],
    name: str,
    source: str,
) -> list[str]:
    """The prefixes of the other complete copies, which must equal ``chosen`` (the same
    keys read through another layout or prefix split are not copies)."""
    duplicates = []
    for other in others:
        if set(other.pairs.values()) == set(chosen.pairs.values()):
            continue  # the same keys read through another layout / prefix split
        differ = [
            t for t in required if not torch.equal(state[chosen.pairs[t]], state[other.pairs[t]])
        ]
        if differ:
            raise CheckpointError(
                f"{source} holds two different {name} backbones, under "
                f"{chosen.prefix or '(top level)'!r} and {other.prefix or '(top level)'!r} "
                f"(e.g. {chosen.pairs[sorted(differ)[0]]} differs)",
                hint="extract the one you want into its own file",
            )
        duplicates.append(other.prefix)
    return duplicates


def _check_shapes(
    chosen: _Group, state: Mapping[str, Any], own: dict[str, Any], name: str, source: str
) -> None:
    """Refuse a copy whose tensors do not have the backbone's shapes."""
    shapes = [
        f"{chosen.pairs[t]} {tuple(state[chosen.pairs[t]].shape)} != {tuple(own[t].shape)}"
        for t in sorted(chosen.pairs)
        if tuple(state[chosen.pairs[t]].shape) != tuple(own[t].shape)
    ]
    if shapes:
        raise CheckpointError(
            f"{source}: the {name} backbone under {chosen.prefix or 'the top level'!r} has "
            f"{len(shapes)} mis-shaped tensors: {_first_five(shapes)}",
            hint="is it a checkpoint of the same backbone (width, variant)?",
        )


def _check_no_strays(
    chosen: _Group, state: Mapping[str, Any], used: set[str], name: str, source: str
) -> None:
    """Refuse keys under the taken prefix that belong to a backbone module but fit
    nowhere (e.g. ``layer1.2.*`` of a ResNet-34 read as a ResNet-18)."""
    tops = _top_names(set(chosen.pairs))
    strays = []
    for key in state:
        if key in used or not key.startswith(chosen.prefix):
            continue
        rest = key[len(chosen.prefix) :]
        if rest.split(".")[0] in tops:
            strays.append(key)
    if strays:
        raise CheckpointError(
            f"{source}: {len(strays)} keys of the backbone have no place in {name}: "
            f"{_first_five(strays)}",
            hint="a deeper or different variant of the network? use its own backbone",
        )


def _first_five(names: list[str]) -> str:
    """``a, b, c, d, e (+N more)``."""
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def _raise_incomplete(
    name: str,
    groups: dict[tuple[str, str], _Group],
    required: set[str],
    state: Mapping[str, Any],
    source: str,
) -> None:
    best = max(groups.values(), key=lambda g: len(required & set(g.pairs)), default=None)
    if best is None or len(required & set(best.pairs)) < max(1, len(required) // 4):
        firsts = sorted(Counter(k.split(".")[0] for k in state))[:6]
        raise CheckpointError(
            f"{source} holds no {name} backbone (top-level keys: {', '.join(firsts) or 'none'})",
            hint="pass a checkpoint of this backbone (classification, segmentation or MODNet)",
        )
    missing = sorted("model." + t for t in required - set(best.pairs))
    raise CheckpointError(
        f"{source} has an incomplete {name} backbone under {best.prefix or 'the top level'!r} "
        f"({best.layout}): {len(missing)} missing: {_first_five(missing)}",
        hint="is it a checkpoint of this backbone?",
    )


def read_backbone_source(path_or_state: str | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """A checkpoint path (a ``matdata train`` run directory -> its ``last.pt``) or a
    state_dict -> the flat tensor mapping (wrappers and ``module.`` removed) and its label."""
    from matdata.checkpoints import read_state_dict, strip_prefix, unwrap_state_dict

    if isinstance(path_or_state, str):
        from matdata.storage import exists, join

        path = path_or_state
        if exists(join(path, "last.pt")):
            path = join(path, "last.pt")
        return strip_prefix(read_state_dict(path)), path
    label = "<backbone state_dict>"
    return strip_prefix(unwrap_state_dict(path_or_state, label)), label


def load_backbone(backbone: nn.Module, path_or_state: str | Mapping[str, Any]) -> BackboneLoad:
    """Copy the backbone found in a checkpoint into ``backbone``; return the report."""
    state, label = read_backbone_source(path_or_state)
    weights, report = match_backbone(backbone, state, label)
    with torch.no_grad():
        result = backbone.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(_COUNTER)]
    if missing or result.unexpected_keys:  # cannot happen after matching; be loud if it does
        raise CheckpointError(f"{label}: backbone keys did not load: {missing[:5]}")
    return report
