"""The MODNet trainer: streams a built dataset's shards, CPU / one GPU / DDP (torchrun).

One :class:`Trainer` runs a fixed number of optimizer steps.  Everything that decides the
result is in :class:`TrainConfig` and in the checkpoint, so ``--resume`` continues exactly:
a checkpoint holds the model, optimizer, LR scheduler and AMP scaler states, the step (which
is also the data position: batches consumed per rank, see :mod:`modnet.data`), the config
(a JSON string) and the torch RNG states.  Checkpoints contain only tensors and plain
containers, so they load with ``torch.load(weights_only=True)``.

Run directory ``RUN``::

    RUN/config.json             the resolved TrainConfig
    RUN/metrics.jsonl           one JSON object per logged train step / validation
    RUN/checkpoints/step-NNNNNNN.pt, RUN/last.pt
    RUN/keys.rankR.jsonl        keys of every batch (only with ``record_keys``)
    RUN/tensorboard/            only when the ``tensorboard`` package is installed

Ctrl-C stops after the current step and writes a checkpoint first (all ranks stop at the
same step); ``--resume RUN`` then continues exactly.

Distributed: started by ``torchrun``, the usual ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
variables select the process group (``nccl`` on CUDA, ``gloo`` on CPU).  BatchNorm layers
become SyncBatchNorm before wrapping in DDP on CUDA (PyTorch's SyncBatchNorm has no CPU
kernel, so CPU ranks keep per-rank batch statistics; rank 0's running statistics are
saved).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from matdata import testhooks
from matdata.errors import CheckpointError, ConfigError, DatasetError, Interrupted
from modnet.losses import DEFAULT_WEIGHTS

CKPT_FORMAT = "matdata-modnet-train"
#: Largest training crop side (``--image-size``).
MAX_IMAGE_SIZE = 4096
CKPT_VERSION = 1

#: Fields that fix what a run computes: a resumed run may not change them.
LOCKED = (
    "backbone",
    "hr_channels",
    "batch_size",
    "image_size",
    "seed",
    "fmt",
    "shuffle_buffer",
    "recompose",
    "optimizer",
    "loss_weights",
    "task",
    "data_weights",
)
TASKS = ("matting", "segmentation")


@dataclass
class TrainConfig:
    """All options of a training run (``matdata train`` maps its flags onto these)."""

    data: str | list[str] = ""  # one dataset dir, or several (mixed, modnet.mixing)
    out: str = ""
    task: str = "matting"  # matting (MODNet) | segmentation (coarse backbone pretraining)
    data_weights: dict[str, float] | None = None  # mixing weights by dataset name / path
    backbone_weights: str | None = None  # checkpoint holding a pretrained backbone
    backbone: str = "mobilenetv2"
    hr_channels: int = 32
    steps: int = 1000
    batch_size: int = 8
    image_size: int = 512
    device: str = "auto"
    optimizer: str = "adamw"  # adamw | sgd (MODNet's SGD + momentum 0.9)
    lr: float | None = None  # default: 1e-3 (adamw) / 1e-2 (sgd, as MODNet)
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | step (x0.1 every quarter, as MODNet) | constant
    warmup: int | None = None  # linear warm-up steps; default min(500, steps // 20)
    clip_grad: float = 1.0  # max global grad norm; 0 = off
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    val_every: int = 500  # 0 = only at the end
    val_at_start: bool = True
    val_batches: int = 0  # 0 = the whole val split
    ckpt_every: int = 1000  # 0 = only at the end
    keep_checkpoints: int = 3
    log_every: int = 10
    workers: int | None = None  # DataLoader workers; None: matdata.threads.plan decides
    seed: int = 0
    init: str | None = None
    fmt: str | None = None
    shuffle_buffer: int = 256
    recompose: float = 0.0
    loss_weights: tuple[float, float, float] = DEFAULT_WEIGHTS  # modnet.losses: one place
    record_keys: bool = False
    verify: bool = True  # hash shards while streaming; refuse a mismatch
    max_bad_records: int = 10  # undecodable records skipped before training stops
    val_limit: int = 128  # samples per validation pass (0 = the whole val split)
    threads: int | None = None  # torch threads of each process; None: matdata.threads.plan
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["loss_weights"] = list(self.loss_weights)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        d = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if "loss_weights" in d:
            d["loss_weights"] = tuple(float(w) for w in d["loss_weights"])
        return cls(**d)

    @property
    def data_dirs(self) -> list[str]:
        """The dataset directories (``data`` as a list)."""
        return [self.data] if isinstance(self.data, str) else list(self.data)

    def check(self) -> None:
        if not self.data or not all(self.data_dirs):
            raise ConfigError("no dataset given", hint="pass --data DIR (a `matdata build` output)")
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}", hint="matting or segmentation")
        if self.task == "segmentation" and self.init:
            raise ConfigError(
                "--init loads a whole MODNet, not a segmentation model",
                hint="start the segmentation stage from --backbone-weights (e.g. ImageNet)",
            )
        if self.init and self.backbone_weights:
            raise ConfigError(
                "--init and --backbone-weights both set the backbone",
                hint="--init for a whole MODNet, --backbone-weights for the backbone only",
            )
        if self.data_weights:
            from modnet.mixing import resolve_weights

            resolve_weights(self.data_dirs, self.data_weights, [1] * len(self.data_dirs))
        if not self.out:
            raise ConfigError("no run directory given", hint="pass --out RUN")
        if self.image_size % 32 or self.image_size < 32:
            raise ConfigError(f"--image-size {self.image_size} is not a multiple of 32")
        if self.image_size > MAX_IMAGE_SIZE:
            raise ConfigError(f"--image-size {self.image_size} is above {MAX_IMAGE_SIZE}")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("--steps and --batch-size must be >= 1")
        if self.lr is not None and not 0 < self.lr <= 10:
            raise ConfigError(f"--lr must be in (0, 10], got {self.lr:g}")
        if self.warmup is not None and self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if not 0.0 <= self.recompose <= 1.0:
            raise ConfigError(f"--recompose is a probability in [0, 1], got {self.recompose:g}")
        for name in ("val_every", "val_batches", "val_limit", "ckpt_every", "shuffle_buffer"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        if self.log_every < 1:
            raise ConfigError(f"--log-every must be >= 1, got {self.log_every}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}", hint="adamw or sgd")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError(f"unknown schedule {self.schedule!r}", hint="cosine, step, constant")
        if self.max_bad_records < 0:
            raise ConfigError(f"--max-bad-records must be >= 0, got {self.max_bad_records}")

    @property
    def base_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 1e-3 if self.optimizer == "adamw" else 1e-2

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else min(500, self.steps // 20)


def resolve_config(
    overrides: dict[str, Any], resume: str | None = None, notes: list[str] | None = None
) -> TrainConfig:
    """Defaults (or the resumed checkpoint's config) updated with the non-None overrides.

    A resumed run may change e.g. ``steps``, ``device``, ``workers``, ``out``, ``data`` and
    the logging cadence, but not the fields in :data:`LOCKED` (that would not continue the
    same run): those raise :class:`ConfigError`, and so does ``steps`` below the
    checkpoint's step.  Each change that is allowed is described in ``notes`` (when given),
    so the CLI can say what differs from the run being resumed.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if resume is None:
        cfg = TrainConfig(**overrides)
    else:
        ckpt = read_checkpoint(resume)
        base = TrainConfig.from_json(ckpt["config"])
        at = int(ckpt.get("step", 0))
        if "steps" in overrides and overrides["steps"] < at:
            raise ConfigError(
                f"--steps {overrides['steps']} is below the checkpoint's step {at}",
                hint=f"give --steps {at} or more, or drop --steps",
            )
        if notes is not None:
            notes.extend(_resume_notes(base, overrides, at))
        clash = [
            k for k in LOCKED if k in overrides and _norm(overrides[k]) != _norm(getattr(base, k))
        ]
        if clash:
            raise ConfigError(
                "a resumed run cannot change " + ", ".join(clash),
                hint="drop these options or start a new run with --init",
            )
        cfg = dataclasses.replace(base, **overrides)
        if len(cfg.data_dirs) != len(base.data_dirs):
            raise ConfigError(
                f"the run trains on {len(base.data_dirs)} dataset(s); a resume cannot change that",
                hint="pass the same --data list (paths may move) or start a new run",
            )
    cfg.check()
    return cfg


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple | list) else v


def _resume_notes(base: TrainConfig, overrides: dict[str, Any], at: int) -> list[str]:
    """One line per option a resumed run changes (the locked ones are refused before)."""
    notes = []
    for key, new in sorted(overrides.items()):
        old = getattr(base, key, None)
        if key in LOCKED or _norm(new) == _norm(old):
            continue
        text = f"{key}: {old} -> {new}"
        if key == "steps":
            what = "extends" if new > old else "shortens"
            text += (
                f" ({what} the run from step {at}; the {base.schedule} learning-rate schedule"
                f" is recomputed for {new} steps)"
            )
        elif key in ("lr", "warmup", "schedule", "clip_grad"):
            text += " (the optimisation differs from an uninterrupted run)"
        notes.append(text)
    return notes


# --------------------------------------------------------------------- schedule


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base LR at ``step`` (0-based): linear warm-up from ``1/warmup``,
    then cosine to 0 over the remaining steps, MODNet's step decay (x0.1 every quarter of
    the run) or constant."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 0.1 ** (step * 4 // max(total, 1))
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0), span) / span
    return 0.5 * (1.0 + math.cos(math.pi * t))


# ------------------------------------------------------------------ distributed


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op when single)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, False)
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if device_kind == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local, True)


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device (CUDA rank-local under DDP):
    :func:`matdata.device.resolve_device`, the resolver harmonization uses too."""
    from matdata.device import resolve_device

    return resolve_device(spec, local_rank)


# ------------------------------------------------------------------ checkpoints


def read_checkpoint(path: str) -> dict[str, Any]:
    """Read a training checkpoint (a file, or a run directory -> its ``last.pt``) safely."""
    import pickle

    from matdata.checkpoints import check_torch_file
    from matdata.storage import exists, join, open_input

    if exists(join(path, "last.pt")):
        path = join(path, "last.pt")
    check_torch_file(path)
    try:
        with open_input(path) as f:
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a readable training checkpoint: {str(exc)[:200]}"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointError(
            f"{path} is not a `matdata train` checkpoint",
            hint="use --init to start from released or foreign weights",
        )
    return ckpt


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ------------------------------------------------------------------ losses


def mask_ignored(
    preds: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    alpha: torch.Tensor,
    ignore: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace predictions by their (constant) targets where ``ignore`` is 1, so ignored
    pixels add neither loss nor gradient to any MODNet term.  The semantic prediction is
    replaced in every 1/16 cell that touches an ignored pixel."""
    from modnet.losses import semantic_target

    sem, det, matte = preds
    if not bool(ignore.any()):
        return sem, det, matte
    keep = 1.0 - ignore
    det = det * keep + alpha * ignore
    matte = matte * keep + alpha * ignore
    ign_low = F.adaptive_max_pool2d(ignore, tuple(sem.shape[-2:]))
    target = semantic_target(alpha, tuple(sem.shape[-2:]))
    sem = sem * (1.0 - ign_low) + target * ign_low
    return sem, det, matte


def compute_losses(
    model: torch.nn.Module, batch: dict[str, Any], weights: tuple[float, float, float]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Forward one batch (already on the device): MODNet's weighted losses and the matte."""
    from modnet.losses import modnet_losses

    sem, det, matte = model(batch["image"], False)
    sem, det, matte = (t.float() for t in (sem, det, matte))
    raw_matte = matte
    sem, det, matte = mask_ignored((sem, det, matte), batch["alpha"], batch["ignore"])
    losses = modnet_losses(
        sem,
        det,
        matte,
        batch["image"],
        batch["alpha"],
        batch["trimap"],
        coarse_mask=batch["coarse"],
        weights=weights,
    )
    return losses, raw_matte


# ------------------------------------------------------------------ trainer


class Trainer:
    """Set up model, optimizer, data and logging from a :class:`TrainConfig`; :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        from matdata import threads
        from modnet import load_modnet_weights

        self.cfg = cfg
        self.threads = threads.plan(cfg.threads, cfg.workers)
        threads.apply(self.threads)
        self.loader_workers = self.threads.loader_workers
        self.interrupt = _Interrupt()
        kind = "cuda" if pick_device(cfg.device).type == "cuda" else "cpu"
        self.dist = setup_distributed(kind)
        self.device = pick_device(cfg.device, self.dist.local_rank)
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        ckpt = read_checkpoint(resume) if resume else None

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = self.build_model()
        if cfg.init and ckpt is None:
            load_modnet_weights(model, cfg.init)
        elif cfg.backbone_weights and ckpt is None:
            from modnet.backbone_weights import load_backbone

            report = load_backbone(model.backbone, cfg.backbone_weights)
            for line in report.lines():
                self.note(line, style="")
        self.datasets = _describe(cfg)
        model.to(self.device)
        self.model = model
        self.net: torch.nn.Module = model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            if self.device.type == "cuda":
                self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
                self.model = self.net
                ids = [self.device.index]
            else:
                ids = None
            self.net = DistributedDataParallel(self.net, device_ids=ids)

        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "adamw":
            self.opt: torch.optim.Optimizer = torch.optim.AdamW(
                params, lr=cfg.base_lr, weight_decay=cfg.weight_decay
            )
        else:
            self.opt = torch.optim.SGD(
                params, lr=cfg.base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        total, warm, sched = cfg.steps, cfg.warmup_steps, cfg.schedule
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, total, warm, sched)
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp)
        self.step = 0
        self._bad_seen: set[tuple[str, str]] = set()
        if ckpt is not None:
            self._restore(ckpt)
        self._val_sets = self._validation_sets()

    def build_model(self) -> torch.nn.Module:
        """The network of this task (MODNet here; :mod:`modnet.segmentation` overrides)."""
        from modnet import build_modnet

        return build_modnet(self.cfg.backbone, self.cfg.hr_channels, log=None)

    def note(self, text: str, style: str = "yellow") -> None:
        """A line on stderr from rank 0 (warnings, load reports)."""
        if not self.dist.is_main:
            return
        from rich.console import Console
        from rich.markup import escape

        tag = f"[{style}]note:[/] " if style else ""
        Console(stderr=True, highlight=False).print(tag + escape(text), soft_wrap=True)

    # -------------------------------------------------------------- state

    def _validation_sets(self) -> list[tuple[str, str]]:
        """``(name, dir)`` of the datasets with a usable ``val`` split; says which have none
        (training then runs without validation on them, it does not skip it silently)."""
        out = []
        for info in self.datasets:
            n = int(info["splits"].get("val", 0))
            if n >= self.dist.world:
                out.append((info["name"], info["path"]))
                continue
            what = f"only {n} val sample(s) for {self.dist.world} ranks" if n else "no val split"
            self.note(
                f"{info['path']} has {what}: training runs without validation on it "
                "(ingest its sources with -o val_fraction=0.2, or fewer ranks)"
            )
        if not out:
            self.note("no dataset has a val split: this run reports no validation metrics")
        return out

    def state(self) -> dict[str, Any]:
        return {
            "format": CKPT_FORMAT,
            "version": CKPT_VERSION,
            "model": self.model.state_dict(),
            "model_config": json.dumps(self.model_config()),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "data_position": self._data_position(),
            "config": self.cfg.to_json(),
            "datasets": json.dumps(self.datasets),
            "rng": _rng_state(self.device),
        }

    def _data_position(self) -> dict[str, int]:
        """Where the training stream stands: batches consumed per rank (what resuming
        uses), and for reference the epoch and the sample offset within it."""
        pos = {"batches_per_rank": self.step, "world": self.dist.world}
        per_rank = getattr(self, "_per_rank", 0)
        if per_rank:
            consumed = self.step * self.cfg.batch_size
            pos.update(epoch=consumed // per_rank, sample_in_epoch=consumed % per_rank)
        return pos

    def model_config(self) -> dict[str, Any]:
        return {"backbone": self.cfg.backbone, "hr_channels": self.cfg.hr_channels}

    def _check_datasets(self, ckpt: dict[str, Any]) -> None:
        """Warn when a resumed run reads datasets whose ``dataset.json`` changed."""
        try:
            before = json.loads(ckpt.get("datasets", "[]"))
        except ValueError:
            return
        for old, new in zip(before, self.datasets, strict=False):
            if old.get("dataset_json_sha256") != new["dataset_json_sha256"]:
                self.note(
                    f"{new['path']}: dataset.json differs from the one the run started on "
                    "(rebuilt?): the data order will differ from an uninterrupted run"
                )

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self._check_datasets(ckpt)
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        _set_rng_state(ckpt["rng"], self.device)
        world = int(ckpt.get("data_position", {}).get("world", 1))
        if world != self.dist.world and self.dist.is_main:
            from rich.console import Console

            Console(stderr=True).print(
                f"[yellow]warning:[/] checkpoint was written with {world} process(es), resuming "
                f"with {self.dist.world}: the data order will differ from an uninterrupted run"
            )

    def save(self) -> str | None:
        """Write ``checkpoints/step-N.pt`` and ``last.pt`` (rank 0), prune old ones."""
        if not self.dist.is_main:
            return None
        from matdata.storage import join, makedirs
        from modnet.checkpointing import save_state

        cdir = join(self.cfg.out, "checkpoints")
        makedirs(cdir)
        state = self.state()
        path = join(cdir, f"step-{self.step:07d}.pt")
        for target in (path, join(self.cfg.out, "last.pt")):
            save_state(state, target)
        if self.cfg.keep_checkpoints > 0:
            old = sorted(p for p in os.listdir(cdir) if p.startswith("step-"))
            for name in old[: -self.cfg.keep_checkpoints]:
                os.remove(os.path.join(cdir, name))
        return path

    # -------------------------------------------------------------- data

    def _stream(
        self, split: str, train: bool, start_batch: int = 0, data: str | None = None
    ) -> Any:
        """The training stream (several datasets: :class:`modnet.mixing.MixedStream`) or the
        stream of one dataset's split (``data``, default the first)."""
        from modnet.data import MattingStream, StreamConfig

        cfg = self.cfg
        scfg = StreamConfig(
            split=split,
            image_size=(cfg.image_size, cfg.image_size),
            batch_size=cfg.batch_size,
            train=train,
            seed=cfg.seed,
            fmt=cfg.fmt,
            shuffle_buffer=cfg.shuffle_buffer,
            recompose=cfg.recompose,
        )
        dirs = cfg.data_dirs
        if train and data is None and len(dirs) > 1:
            from modnet.mixing import MixedStream

            return MixedStream.open(
                dirs,
                scfg,
                cfg.data_weights,
                start_batch=start_batch,
                rank=self.dist.rank,
                world=self.dist.world,
            )
        return MattingStream(
            data or dirs[0],
            scfg,
            epochs=None if train else 1,
            start_batch=start_batch,
            rank=self.dist.rank,
            world=self.dist.world,
            verify=cfg.verify,
        )

    def _note_bad(self, batch: dict[str, Any]) -> bool:
        """Record the undecodable records a batch left out (``RUN/bad_records.jsonl``, once
        each); raise past ``max_bad_records``.  True if the batch has no sample left."""
        bad = batch.get("bad") or []
        if bad:
            from modnet.checkpointing import note_bad_records

            note_bad_records(self.cfg.out, bad, self._bad_seen, self.cfg.max_bad_records)
        empty = len(batch["key"]) == 0
        if empty and self.dist.world > 1:  # skipping a step on one rank would stall the others
            raise DatasetError(
                f"rank {self.dist.rank} got a batch of undecodable records only "
                f"(listed in {self.cfg.out}/bad_records.jsonl)",
                hint="repair or rebuild the dataset",
            )
        return empty

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        from modnet.data import prepare_batch

        return prepare_batch(batch, self.device)

    # -------------------------------------------------------------- steps

    def losses(
        self, net: torch.nn.Module, batch: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The task's loss terms (``total`` is optimised) and its prediction for a batch."""
        return compute_losses(net, batch, self.cfg.loss_weights)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimizer step; returns the (rank-local) loss terms and the LR used."""
        self.net.train()
        lr = self.opt.param_groups[0]["lr"]
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            losses, _ = self.losses(self.net, batch)
        self.scaler.scale(losses["total"]).backward()
        grad_norm = float("nan")
        if self.cfg.clip_grad > 0:
            self.scaler.unscale_(self.opt)
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
            )
        scale = self.scaler.get_scale() if self.use_amp else 0.0
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.use_amp and self.scaler.get_scale() < scale:
            # AMP skipped this optimizer step (inf/nan grads, the scale backs off). The LR
            # schedule still follows the step count (logs and resume stay aligned), so
            # torch's "scheduler before optimizer" warning is expected here and muted.
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.sched.step()
        else:
            self.sched.step()
        self.step += 1
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["lr"] = lr
        out["grad_norm"] = grad_norm
        return out

    def val_batches(self) -> int:
        """Batches of one validation pass per rank (0: the whole split): ``val_batches``
        or ``val_limit`` samples, whichever is smaller."""
        cfg = self.cfg
        limits = [cfg.val_batches] if cfg.val_batches else []
        if cfg.val_limit:
            per_batch = cfg.batch_size * self.dist.world
            limits.append(max(1, -(-cfg.val_limit // per_batch)))
        return min(limits) if limits else 0

    def validate_all(self, log: Any) -> dict[str, float] | None:
        """Validate on every dataset's ``val`` split, one log record each (with its
        ``dataset`` name); returns the metrics (prefixed ``NAME/`` when several).  A pass
        ended early by Ctrl-C (single process) is not logged."""
        out: dict[str, float] = {}
        for name, path in self._val_sets:
            val = self.validate(path, log)
            if self.interrupt.requested and self.dist.world == 1:
                return out or None
            log.write({"kind": "val", "step": self.step, "dataset": name, **val})
            if len(self._val_sets) == 1:
                return val
            out.update({f"{name}/{k}": v for k, v in val.items()})
        return out or None

    @torch.no_grad()
    def validate(self, data: str | None = None, log: _RunLog | None = None) -> dict[str, float]:
        """Loss and matting metrics on the ``val`` split of ``data`` (default: the first
        dataset; fixed trimaps), all ranks reduced.  Coarse samples count in the loss only
        (their metrics would compare a matte with a mask; NaN when all are coarse).

        At most :meth:`val_batches` batches, shown on ``log``'s display; a Ctrl-C ends the
        pass early (single process; the run then stops and saves)."""
        from modnet.data import make_loader

        model = self.model  # unwrapped: no collectives inside the loop
        was_training = model.training
        model.eval()
        stream = self._stream("val", train=False, data=data)
        sums = torch.zeros(2, dtype=torch.float64)  # loss * n, n
        acc = _MetricAccumulator(self.device)
        loader = make_loader(stream, workers=min(self.loader_workers, 2))
        limit = self.val_batches()
        batches = -(-stream.per_rank // self.cfg.batch_size) if stream.per_rank else 0
        total = min(limit, batches) if limit and batches else (limit or batches)
        with _null_progress() if log is None else log.val_progress(total or None) as tick:
            it = iter(loader)
            i = 0
            while not limit or i < limit:
                if self.interrupt.requested and self.dist.world == 1:
                    break
                try:
                    batch = next(it)
                except StopIteration:
                    break
                except RuntimeError:  # loader workers killed by the same Ctrl-C
                    if self.interrupt.requested:
                        break
                    raise
                i += 1
                if self._note_bad(batch):
                    continue
                batch = self._to_device(batch)
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                    losses, matte = compute_losses(model, batch, self.cfg.loss_weights)
                n = batch["image"].shape[0]
                sums += torch.tensor([float(losses["total"]) * n, n], dtype=torch.float64)
                fine = ~batch["coarse"]  # matting metrics skip coarse masks, as `evaluate` does
                if bool(fine.any()):
                    acc.add(matte[fine], batch["alpha"][fine], batch["trimap"][fine])
                tick(1)
            del it
        if self.dist.world > 1:
            import torch.distributed as dist

            reduce_dev = self.device if self.device.type == "cuda" else torch.device("cpu")
            t = sums.to(reduce_dev)
            dist.all_reduce(t)
            sums = t.cpu()
        model.train(was_training)
        out = {"loss": float(sums[0] / max(float(sums[1]), 1.0)), "samples": int(sums[1])}
        out.update(acc.result(self.dist.world > 1))
        return out

    # -------------------------------------------------------------- loop

    def fit(self) -> dict[str, Any]:
        """Train until ``cfg.steps``; returns a summary (last train and val metrics).

        A Ctrl-C finishes the current step (or ends a validation pass early), writes a
        checkpoint and raises :class:`~matdata.errors.Interrupted` naming it and the
        ``--resume`` command."""
        from contextlib import nullcontext

        from modnet.data import make_loader

        cfg = self.cfg
        summary: dict[str, Any] = {"start_step": self.step}
        val: dict[str, float] | None = None
        train: dict[str, float] = {}
        interrupt = self.interrupt
        alone = self.dist.world == 1  # with several ranks, all stop together at a step
        log: _RunLog | None = None
        it = None
        try:
            with interrupt:
                log = _RunLog(cfg, self.dist, self.step, self.datasets)
                if self._val_sets and cfg.val_at_start and self.step == 0:
                    val = self.validate_all(log)
                if not (interrupt.requested and alone):
                    stream = self._stream("train", train=True, start_batch=self.step)
                    self._per_rank = stream.per_rank
                    loader = make_loader(
                        stream, self.loader_workers, pin_memory=self.device.type == "cuda"
                    )
                    it = iter(loader)
            t0 = time.perf_counter()
            guard = interrupt if it is not None else nullcontext()
            with guard, log.progress(cfg.steps, self.step) as advance:
                while it is not None and self.step < cfg.steps:
                    try:
                        batch = next(it)
                    except RuntimeError:  # loader workers killed by the same Ctrl-C
                        if interrupt.requested:
                            break
                        raise
                    if self._note_bad(batch):
                        continue
                    if cfg.record_keys:
                        log.keys(self.step, batch["key"])
                    train = self.train_step(self._to_device(batch))
                    testhooks.step_done(self.step)  # MATDATA_TEST_SIGINT_AFTER_STEPS: Ctrl-C
                    stop = interrupt.requested
                    if self.dist.world > 1:
                        train["total"], stop = _reduce_step(train["total"], stop, self.device)
                    dt = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    last = self.step == cfg.steps
                    if self.step % cfg.log_every == 0 or last or stop:
                        log.write({"kind": "train", "step": self.step, **train, "step_time": dt})
                    advance(train)
                    if stop:
                        break
                    if self._val_sets and (
                        (cfg.val_every and self.step % cfg.val_every == 0) or last
                    ):
                        val = self.validate_all(log)
                        if interrupt.requested and alone and not last:
                            break
                    if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or last:
                        self.save()
        finally:
            it = None
            if log is not None:
                log.close()
        if self.step < cfg.steps:  # stopped by Ctrl-C between two steps: keep the progress
            path = self.save()
            where = f"checkpoint {path} written" if path else "rank 0 wrote the checkpoint"
            raise Interrupted(
                f"training stopped at step {self.step} of {cfg.steps}; {where}",
                hint=f"continue with: matdata train --resume {cfg.out}",
            )
        summary.update(step=self.step, train=train, val=val, datasets=self.datasets)
        return summary

    def close(self) -> None:
        import torch.distributed as dist

        if self.dist.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def _reduce_step(total: float, stop: bool, device: torch.device) -> tuple[float, bool]:
    """Mean loss over ranks, and whether any rank was asked to stop (all stop together)."""
    import torch.distributed as dist

    t = torch.tensor([total, float(stop)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]) / dist.get_world_size(), bool(t[1] > 0)


class _Interrupt:
    """Turn the first Ctrl-C (SIGINT) into a request to stop after the current step, so the
    checkpoint written on the way out is consistent; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        import signal

        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> _Interrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self._previous is not None and not self.requested:
            signal.signal(signal.SIGINT, self._previous)


def _null_progress() -> Any:
    from contextlib import nullcontext

    return nullcontext(lambda _n: None)


class _MetricAccumulator:
    """Matting metrics (:mod:`matdata.metrics`) over validation batches, summed per rank
    and all-reduced across ranks (sums and counts add up exactly)."""

    def __init__(self, device: torch.device) -> None:
        from matdata.metrics import MetricSums

        self.device = device
        self.sums = MetricSums()

    def add(self, pred: torch.Tensor, alpha: torch.Tensor, trimap: torch.Tensor) -> None:
        p = pred.detach().float().clamp(0, 1).cpu().numpy()
        a = alpha.detach().float().cpu().numpy()
        t = trimap.detach().float().cpu().numpy()
        for i in range(p.shape[0]):
            self.sums.add(p[i, 0], a[i, 0], t[i, 0])

    def result(self, distributed: bool) -> dict[str, float]:
        from matdata.metrics import MetricSums

        sums = self.sums
        if distributed:
            import torch.distributed as dist

            dev = self.device if self.device.type == "cuda" else torch.device("cpu")
            t = torch.from_numpy(sums.to_array()).to(dev)
            dist.all_reduce(t)
            sums = MetricSums.from_array(t.cpu().numpy(), sums.regions, sums.convention)
        return sums.flat()


class _RunLog:
    """JSONL metrics (+ TensorBoard when installed) and the rich live display, rank 0."""

    def __init__(
        self,
        cfg: TrainConfig,
        dist: DistInfo,
        start_step: int,
        datasets: list[dict[str, Any]] | None = None,
    ):
        from matdata.storage import join, makedirs

        self.cfg = cfg
        self.main = dist.is_main
        self.rank = dist.rank
        self.world = dist.world
        self._keys = None
        makedirs(cfg.out)
        if cfg.record_keys:
            name = os.path.join(cfg.out, f"keys.rank{dist.rank}.jsonl")
            self._keys = open(name, "a")  # noqa: SIM115 - lives as long as the run
        self.tb = None
        if not self.main:
            return
        from matdata.storage import atomic_write_text

        record = json.loads(cfg.to_json())
        record["datasets"] = datasets  # path, name, weight, splits, dataset.json SHA-256
        atomic_write_text(join(cfg.out, "config.json"), json.dumps(record, sort_keys=True) + "\n")
        path = os.path.join(cfg.out, "metrics.jsonl")
        _truncate_log(path, start_step)
        self.f = open(path, "a")  # noqa: SIM115 - lives as long as the run
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(cfg.out, "tensorboard"), purge_step=start_step)
        except ImportError:
            self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        self.f.write(json.dumps(record, allow_nan=True) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and k != "step":
                    self.tb.add_scalar(f"{record['kind']}/{k}", v, record["step"])

    def keys(self, step: int, keys: list[str]) -> None:
        if self._keys is not None:
            self._keys.write(json.dumps({"step": step, "keys": list(keys)}) + "\n")
            self._keys.flush()

    def progress(self, total: int, start: int) -> Any:
        """The training display (rank 0): a rich bar on a terminal, plain lines otherwise
        (step, loss, samples/s, ETA); yields ``advance(metrics)``."""
        from contextlib import contextmanager

        samples_per_step = self.cfg.batch_size * self.world

        @contextmanager
        def ctx():
            if not self.main:
                yield lambda _m: None
                return
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from matdata.progress import make_progress

            with make_progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=_stderr_console(),
                transient=False,
                label="train step",
                unit="steps",
            ) as prog:
                task = prog.add_task("train", total=total, completed=start, info="")
                t0, done = time.perf_counter(), 0

                def advance(m: dict[str, float]) -> None:
                    nonlocal done
                    done += 1
                    rate = done * samples_per_step / max(time.perf_counter() - t0, 1e-9)
                    terms = " ".join(
                        f"{k[0]} {m[k]:.3f}" for k in ("semantic", "detail", "matte") if k in m
                    )
                    terms = f" ({terms})" if terms else ""
                    info = f"loss {m['total']:.4f}{terms} lr {m['lr']:.2e} {rate:.1f} samples/s"
                    prog.update(task, advance=1, info=info)

                yield advance

        return ctx()

    def val_progress(self, total: int | None) -> Any:
        """The display of one validation pass (rank 0); yields ``tick(batches)``."""
        from contextlib import contextmanager

        @contextmanager
        def ctx():
            if not self.main:
                yield lambda _n: None
                return
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

            from matdata.progress import make_progress

            with make_progress(
                TextColumn("[bold]validate"),
                BarColumn(),
                MofNCompleteColumn(),
                console=_stderr_console(),
                transient=True,
                label="validate batch",
                unit="batches",
            ) as prog:
                task = prog.add_task("validate", total=total)
                yield lambda n: prog.advance(task, n)

        return ctx()

    def close(self) -> None:
        if self._keys is not None:
            self._keys.close()
        if self.main:
            self.f.close()
            if self.tb is not None:
                self.tb.close()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _truncate_log(path: str, start_step: int) -> None:
    """Drop log lines after ``start_step`` (left by an interrupted run being resumed)."""
    if not os.path.exists(path):
        return
    if start_step == 0:
        os.remove(path)
        return
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
    with open(path, "w") as f:
        f.writelines(lines)


def _describe(cfg: TrainConfig) -> list[dict[str, Any]]:
    from modnet.mixing import describe_datasets

    return describe_datasets(cfg.data_dirs, cfg.data_weights)


def train(cfg: TrainConfig, resume: str | None = None) -> dict[str, Any]:
    """Run a whole training (``matdata train``); returns :meth:`Trainer.fit`'s summary."""
    if cfg.task == "segmentation":
        from modnet.segmentation import SegTrainer

        trainer: Trainer = SegTrainer(cfg, resume)
    else:
        trainer = Trainer(cfg, resume)
    try:
        return trainer.fit()
    finally:
        trainer.close()
