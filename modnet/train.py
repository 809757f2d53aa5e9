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

The parts around the trainer live in their own modules (their names stay importable from
here): :mod:`modnet.train_config` (TrainConfig, resolve_config), :mod:`modnet.schedule`
(lr_factor), :mod:`modnet.distributed` (DistInfo, process group, device, step reduction),
:mod:`modnet.train_checkpoint` (format, read_checkpoint, RNG state),
:mod:`modnet.loss_masking` (mask_ignored, compute_losses), :mod:`modnet.run_log` (metrics
log and progress displays) and :mod:`modnet.interrupt` (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from matdata import testhooks
from matdata.errors import DatasetError, Interrupted

# The trainer's parts live in their own modules; their names stay importable from here.
from modnet import speed
from modnet.distributed import DistInfo as DistInfo
from modnet.distributed import _reduce_step, pick_device, setup_distributed
from modnet.interrupt import _Interrupt
from modnet.loss_masking import compute_losses
from modnet.loss_masking import mask_ignored as mask_ignored
from modnet.run_log import _null_progress, _RunLog
from modnet.run_log import _stderr_console as _stderr_console
from modnet.run_log import _truncate_log as _truncate_log
from modnet.schedule import lr_factor
from modnet.train_checkpoint import (
    CKPT_FORMAT,
    CKPT_VERSION,
    _rng_state,
    _set_rng_state,
    read_checkpoint,
)
from modnet.train_config import LOCKED as LOCKED
from modnet.train_config import MAX_IMAGE_SIZE as MAX_IMAGE_SIZE
from modnet.train_config import TASKS as TASKS
from modnet.train_config import TrainConfig
from modnet.train_config import _norm as _norm
from modnet.train_config import _resume_notes as _resume_notes
from modnet.train_config import resolve_config as resolve_config


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
        self.precision = speed.resolve_precision(cfg.precision, cfg.amp, self.device)
        self.use_amp = self.precision == "fp16"  # the GradScaler (bf16 needs none)
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
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
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
        self._eager_net = self.net
        self._compile_pending = False
        if cfg.compile:
            self.net, self._compile_pending = speed.compile_module(self.net, self.note)

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt, self.fused = speed.make_optimizer(
            cfg.optimizer, params, lr=cfg.base_lr, weight_decay=cfg.weight_decay,
            momentum=cfg.momentum, fused=cfg.fused, device=self.device,
        )  # fmt: skip
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
        if self.use_amp and ckpt["scaler"]:  # fp16 -> fp16 only (modnet.speed)
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

        batch = prepare_batch(batch, self.device)
        return speed.to_channels_last(batch) if self.cfg.channels_last else batch

    def autocast(self) -> Any:
        """The autocast context of this run's precision (:mod:`modnet.speed`)."""
        # step-only trainers (benchmarks/train_step.py) set use_amp but not precision
        precision = getattr(self, "precision", "fp16" if self.use_amp else "fp32")
        return speed.autocast(self.device, precision)

    def speed_options(self) -> dict[str, Any]:
        """The speed options as this run resolved them (recorded in ``config.json``)."""
        return {
            "precision": self.precision,
            "grad_scaler": self.use_amp,
            "channels_last": bool(self.cfg.channels_last),
            "compile": self.net is not self._eager_net,
            "fused_optimizer": self.fused,
            "device": str(self.device),
        }

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
        losses = self._forward_backward(batch)
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

    def _forward_backward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Zero the gradients, forward, backward (scaled under fp16).  ``--compile``
        compiles at the first call (and again when shapes change): when that fails, one
        warning line, and the step is redone with the eager model (a genuine error then
        recurs there)."""
        try:
            self.opt.zero_grad(set_to_none=True)
            with self.autocast():
                losses, _ = self.losses(self.net, batch)
            self.scaler.scale(losses["total"]).backward()
        except Exception as exc:
            compiled = self.net is not getattr(self, "_eager_net", self.net)
            if not (compiled and (self._compile_pending or speed.is_compile_error(exc))):
                raise
            self._compile_pending = False
            self.note(speed.compile_failed(exc))
            self.net = self._eager_net
            return self._forward_backward(batch)
        self._compile_pending = False
        return losses

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
                with self.autocast():
                    losses, matte = compute_losses(model, batch, self.cfg.loss_weights)
                n = batch["image"].shape[0]
                sums += torch.tensor([float(losses["total"]) * n, n], dtype=torch.float64)
                fine = ~batch["coarse"]  # matting metrics skip coarse masks, as `evaluate` does
                if bool(fine.any()):
                    acc.add(matte[fine], batch["alpha"][fine], batch["trimap"][fine])
                tick(1)
                testhooks.val_batch_done(i)  # MATDATA_TEST_SIGINT_AFTER_VAL_BATCHES: Ctrl-C
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

        cfg = self.cfg
        summary: dict[str, Any] = {"start_step": self.step}
        run = _FitRun()
        try:
            with self.interrupt:
                run.log = _RunLog(cfg, self.dist, self.step, self.datasets, self.speed_options())
                self._fit_start(run)
            run.t0 = time.perf_counter()
            guard = self.interrupt if run.it is not None else nullcontext()
            with guard, run.log.progress(cfg.steps, self.step) as advance:
                while run.it is not None and self.step < cfg.steps:
                    if self._fit_step(run, advance):
                        break
        finally:
            run.it = None
            if run.log is not None:
                run.log.close()
        self._fit_check_stopped()
        summary.update(step=self.step, train=run.train, val=run.val, datasets=self.datasets)
        return summary

    def _fit_start(self, run: _FitRun) -> None:
        """Validate first where asked (``val_at_start``, from step 0), then open the train
        loader (unless a Ctrl-C came meanwhile, on a single rank)."""
        from modnet.data import make_loader

        if self._val_sets and self.cfg.val_at_start and self.step == 0:
            run.val = self.validate_all(run.log)
        if not (self.interrupt.requested and self.dist.world == 1):
            stream = self._stream("train", train=True, start_batch=self.step)
            self._per_rank = stream.per_rank
            run.loader = make_loader(
                stream, self.loader_workers, pin_memory=self.device.type == "cuda"
            )
            run.it = iter(run.loader)

    def _fit_step(self, run: _FitRun, advance: Any) -> bool:
        """One step of :meth:`fit`: next batch, train step, log line, progress, then
        validation and checkpoint when due.  True when the run stops here (Ctrl-C)."""
        cfg, interrupt = self.cfg, self.interrupt
        t_data = time.perf_counter()
        try:
            batch = next(run.it)
        except RuntimeError:  # loader workers killed by the same Ctrl-C
            if interrupt.requested:
                return True
            raise
        data_time = time.perf_counter() - t_data  # waiting for the loader
        if self._note_bad(batch):
            return False
        if cfg.record_keys:
            run.log.keys(self.step, batch["key"])
        train = run.train = self.train_step(self._to_device(batch))
        testhooks.step_done(self.step)  # MATDATA_TEST_SIGINT_AFTER_STEPS: Ctrl-C
        stop = interrupt.requested
        if self.dist.world > 1:
            train["total"], stop = _reduce_step(train["total"], stop, self.device)
        dt = time.perf_counter() - run.t0
        run.t0 = time.perf_counter()
        last = self.step == cfg.steps
        if self.step % cfg.log_every == 0 or last or stop:
            run.log.write(
                {"kind": "train", "step": self.step, **train, "step_time": dt,
                 "data_time": data_time}
            )  # fmt: skip
        advance(train)
        return stop or self._fit_after_step(run, last)

    def _fit_after_step(self, run: _FitRun, last: bool) -> bool:
        """Validation and checkpoint when due after a step; True when a Ctrl-C during a
        validation pass (single rank, not the last step) stops the run."""
        cfg = self.cfg
        if self._val_sets and ((cfg.val_every and self.step % cfg.val_every == 0) or last):
            run.val = self.validate_all(run.log)
            if self.interrupt.requested and self.dist.world == 1 and not last:
                return True
        if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or last:
            self.save()
        return False

    def _fit_check_stopped(self) -> None:
        """Stopped by Ctrl-C before ``cfg.steps``: keep the progress (a checkpoint) and
        raise :class:`~matdata.errors.Interrupted` with the ``--resume`` command."""
        if self.step < self.cfg.steps:
            path = self.save()
            where = f"checkpoint {path} written" if path else "rank 0 wrote the checkpoint"
            raise Interrupted(
                f"training stopped at step {self.step} of {self.cfg.steps}; {where}",
                hint=f"continue with: matdata train --resume {self.cfg.out}",
            )

    def close(self) -> None:
        import torch.distributed as dist

        if self.dist.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _FitRun:
    """What one :meth:`Trainer.fit` carries from step to step."""

    log: _RunLog | None = None
    loader: Any = None  # the train loader (kept for the whole run, as its iterator needs)
    it: Any = None  # its iterator; dropped when the run ends (stops loader workers)
    t0: float = 0.0  # when the previous step ended (a step's time includes its wait)
    val: dict[str, float] | None = None  # the last validation metrics
    train: dict[str, float] = field(default_factory=dict)  # the last train step's metrics


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
