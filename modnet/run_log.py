"""The run log of a training run (rank 0): ``config.json``, ``metrics.jsonl``, TensorBoard,
per-rank batch keys, and the rich progress displays of training and validation."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modnet.distributed import DistInfo
    from modnet.train_config import TrainConfig


def _null_progress() -> Any:
    from contextlib import nullcontext

    return nullcontext(lambda _n: None)


class _RunLog:
    """JSONL metrics (+ TensorBoard when installed) and the rich live display, rank 0."""

    def __init__(
        self,
        cfg: TrainConfig,
        dist: DistInfo,
        start_step: int,
        datasets: list[dict[str, Any]] | None = None,
        speed: dict[str, Any] | None = None,
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
        if speed is not None:
            record["resolved"] = speed  # precision, channels_last... as this run applies them
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
