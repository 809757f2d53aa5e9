"""The options of a MODNet training run: :class:`TrainConfig` and :func:`resolve_config`
(defaults, or a resumed checkpoint's config, updated with command-line overrides)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from matdata.errors import ConfigError
from modnet.losses import DEFAULT_WEIGHTS
from modnet.speed import SPEED_FIELDS, combine_precision
from modnet.train_checkpoint import read_checkpoint

#: Largest training crop side (``--image-size``).
MAX_IMAGE_SIZE = 4096

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
    amp: bool = True  # mixed precision on CUDA (ignored on CPU); see modnet.speed
    precision: str | None = None  # fp32 | fp16 | bf16 autocast; None: from amp (modnet.speed)
    channels_last: bool = False  # model and images in torch.channels_last
    compile: bool = False  # torch.compile the model (falls back to eager with a warning)
    fused: bool | None = None  # fused optimizer kernels; None: on CUDA only
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
        if self.precision is not None:
            combine_precision({"precision": self.precision, "amp": self.amp})
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
    combine_precision(overrides)
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
        elif key in SPEED_FIELDS:
            text += " (a speed option: rounding differs from an uninterrupted run"
            if key in ("precision", "amp"):
                text += "; the GradScaler state carries over only from fp16 to fp16"
            text += ")"
        notes.append(text)
    return notes
