"""A build plan's tasks written to one file (:mod:`matdata.taskfile`): read back shard by
shard they are the plan's own tasks; a changed record is refused; the runner ships the
small reader to the workers (real LocalCluster) instead of the whole plan, and removes the
file when the run ends."""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import pytest

from matdata.build_config import BuildConfig
from matdata.builder import prepare_build
from matdata.errors import DatasetError
from matdata.taskfile import TaskFile
from pipelines.runner import TASKS_NAME, run_shards, staged_tasks

# worker processes cannot import this test module: ship its functions and classes by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _plan(tmp_path: Path, per_fg: int = 3, n_fg: int = 10, **kw):
    cfg = BuildConfig(
        fg="demo",
        bg="demo",
        out=str(tmp_path / "out"),
        per_fg=per_fg,
        size=(32, 32),
        samples_per_shard=per_fg,  # one foreground per shard
        fg_options={"n_fg": n_fg, "size": "32x48", "val_fraction": 0.5},
        **kw,
    )
    return prepare_build(cfg)


def test_records_read_back_as_the_plans_tasks(tmp_path: Path) -> None:
    plan = _plan(tmp_path, trimap=True)
    tasks = plan.tasks
    tf = tasks.to_file(str(tmp_path / "tasks.arrows"))
    assert isinstance(tf, TaskFile) and len(tf) == len(tasks) >= 4
    assert len({t.split for t in tasks}) >= 2  # shards of several splits
    for i in range(len(tasks)):
        a, b = tasks[i], tf[i]
        assert b == a and b.digest == a.digest != ""
        # same dict order too (the shard writer walks pairs; provenance lists sources)
        assert list(b.fg_items) == list(a.fg_items) and list(b.bg_items) == list(a.bg_items)
        assert list(b.sources) == list(a.sources)
        assert tf.info(i) == tasks.info(i) == (a.name, a.samples)
    assert tf.total_samples == tasks.total_samples
    assert tf[-1] == tasks[-1] and tf[1:3] == tasks[1:3] and list(tf) == list(tasks)
    with pytest.raises(IndexError):
        tf[len(tf)]


def test_the_reader_is_a_few_bytes_per_shard_whatever_a_shard_holds(tmp_path: Path) -> None:
    many_bgs = {"n_bg": 300}
    small = _plan(tmp_path / "a", per_fg=2, bg_options=many_bgs)
    big = _plan(tmp_path / "b", per_fg=20, bg_options=many_bgs)
    assert len(small.tasks) == len(big.tasks)  # one foreground per shard in both
    tf_small = small.tasks.to_file(str(tmp_path / "a.arrows"))
    tf_big = big.tasks.to_file(str(tmp_path / "b.arrows"))
    plan_bytes = [len(pickle.dumps(p.tasks)) for p in (small, big)]
    reader_bytes = [len(pickle.dumps(t)) for t in (tf_small, tf_big)]
    assert plan_bytes[1] > plan_bytes[0] * 2  # the plan grows with what its shards hold
    assert abs(reader_bytes[1] - reader_bytes[0]) < 64  # the reader does not
    assert reader_bytes[1] < plan_bytes[1] / 4


def test_a_changed_record_is_refused(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    path = tmp_path / "tasks.arrows"
    tf = plan.tasks.to_file(str(path))
    data = bytearray(path.read_bytes())
    at = int(tf.starts[1]) + 40  # inside record 1
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"changed while it ran \(shard "):
        tf[1]
    assert tf[0] == plan.tasks[0] and tf[2] == plan.tasks[2]  # each record stands alone
    path.write_bytes(bytes(data[: int(tf.ends[-1, 1])]))  # truncated in the last record
    with pytest.raises(DatasetError, match="changed"):
        tf[len(tf) - 1]
    path.unlink()
    with pytest.raises(DatasetError, match="changed"):
        tf[0]


def test_staged_tasks_writes_a_plan_once_and_removes_it(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    out = tmp_path / "out"
    with staged_tasks(plan.tasks, str(out)) as tasks:
        assert isinstance(tasks, TaskFile) and (out / TASKS_NAME).is_file()
        assert tasks[0] == plan.tasks[0]
    assert not (out / TASKS_NAME).exists()
    with pytest.raises(RuntimeError), staged_tasks(plan.tasks, str(out)):
        raise RuntimeError("a failed run")
    assert not (out / TASKS_NAME).exists()
    listed = [1, 2]
    with staged_tasks(listed, str(out)) as tasks:  # tasks that cannot write themselves
        assert tasks is listed
    assert not (out / TASKS_NAME).exists()


@dataclass
class Held:
    name: str
    samples: int
    digest: str
    held_bytes: int  # pickled size of what the worker holds in its data store (not results)
    skipped: bool = False


def _what_the_worker_holds(task, progress) -> Held:
    from distributed import get_worker

    from pipelines.runner import _Outcome

    data = get_worker().data.values()  # the scattered tasks, and results not yet released
    held = sum(len(cloudpickle.dumps(v)) for v in data if not isinstance(v, _Outcome))
    return Held(task.name, task.samples, task.digest, held)


def test_workers_hold_the_reader_not_the_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path, per_fg=4)
    plan_bytes = len(cloudpickle.dumps(plan.tasks))
    with staged_tasks(plan.tasks, str(tmp_path / "out")) as tasks:
        reader_bytes = len(cloudpickle.dumps(tasks))
        res = run_shards(tasks, _what_the_worker_holds, label="t", workers=2, progress=False)
    expected = [plan.tasks[i] for i in range(len(plan.tasks))]
    assert [(r.name, r.samples, r.digest) for r in res] == [
        (t.name, t.samples, t.digest) for t in expected
    ]
    assert max(r.held_bytes for r in res) <= reader_bytes + 1024 < plan_bytes


def _name(task, progress) -> Held:
    return Held(task.name, task.samples, task.digest, 0)


def test_a_changed_task_file_fails_that_shard_in_a_run(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    with staged_tasks(plan.tasks, str(tmp_path / "out")) as tasks:
        path = Path(tasks.path)
        data = bytearray(path.read_bytes())
        data[int(tasks.starts[2]) + 40] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(DatasetError) as err:
            run_shards(tasks, _name, label="t", workers=1, progress=False)
    name = plan.tasks.info(2)[0]
    assert f"1 of {len(plan.tasks)} shards failed (first: {name}: " in str(err.value)
    assert "changed while it ran" in str(err.value)
