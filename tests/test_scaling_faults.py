"""A sweep survives its own death: kills at chosen points (POMLAB_FAULT), a SIGKILL of the main
process (no worker may outlive it), stale locks, corrupt checkpoints and a full disk. After each,
a rerun must write the same results.csv as an uninterrupted sweep."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from test_scaling import TINY_ARGS, _private_metric_cache, tiny_config  # noqa: F401 (fixture)

from pomlab.faults import parse_faults
from pomlab.scaling import SweepConfig, run_model, run_sweep
from pomlab.scaling.config import run_folder_name
from pomlab.scaling.results import run_dir, run_lock
from pomlab.train import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "experiments" / "scaling_laws.py"
# Two one-block micro models on 8x8 digits, 12 steps, evaluations at 3, 6, 12 (3 chunks of 24
# samples each), checkpoints every 5 steps: a whole sweep takes seconds.
ARGS = ["--sizes", "S", *TINY_ARGS[2:]]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def config(out, **kw) -> SweepConfig:
    return tiny_config(out, **{"sizes": "S", **kw})


def sweep(out, **kw):
    return run_sweep(config(out), jobs=1, progress=False, log=lambda line: None, **kw)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    sweep(out)
    return (out / "results.csv").read_text()


def start_cli(out, fault=None, jobs=1):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("POMLAB_FAULT", None)
    if fault:
        env["POMLAB_FAULT"] = fault
    # its own session: every process it starts can be found (and cleaned up) by session id
    return subprocess.Popen([sys.executable, str(CLI), *ARGS, "--jobs", str(jobs),
                             "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry))
    return found


def kill_session(sid: int) -> None:
    for pid in session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stray_temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.tmp") if "reference" not in p.parts]


# --- the fault hook ------------------------------------------------------------------------------

def test_fault_specs_are_parsed_and_bad_ones_refused():
    assert parse_faults("train_step:8,merge:1:hang") == {"train_step": (8, "kill"),
                                                         "merge": (1, "hang")}
    for bad in ("nowhere:1", "train_step:0", "train_step:x", "merge:1:explode"):
        with pytest.raises(ValueError, match="POMLAB_FAULT"):
            parse_faults(bad)


# --- kills at chosen points ----------------------------------------------------------------------

@pytest.mark.slow
@linux_only
@pytest.mark.parametrize("fault", [
    "train_step:10",          # DiPoM-S/2 in its 10th step (evaluations at 3 and 6 done)
    "checkpoint_write:3",     # DiPoM-S/2's checkpoint at step 6, temp file written, not renamed
    "evaluation:4",           # the second evaluation, after its first chunk of samples
    "merge:2",                # results.csv rebuilt after DiT-S/2, written but not renamed
    "finalize:1",             # fits written, figures not
])
def test_killed_at_a_fault_point_then_rerun_gives_the_same_csv(fault, straight, tmp_path):
    out = tmp_path / "out"
    proc = start_cli(out, fault)
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    before = (out / "results.csv").read_text() if (out / "results.csv").exists() else ""
    assert before != straight or fault == "finalize:1"      # the kill left work to do
    again = sweep(out)
    assert (out / "results.csv").read_text() == straight
    assert not stray_temp_files(out)                           # a killed write's temp file removed
    assert (out / "scaling.png").is_file() and (out / "fits.json").is_file()
    if fault == "finalize:1":
        assert again.evaluations == 0


@pytest.mark.slow
@linux_only
def test_sigkill_of_the_main_process_leaves_no_worker_and_the_rerun_finishes(straight, tmp_path,
                                                                            capfd):
    """The reported failure: the main process killed with SIGKILL (as the OOM killer or `kill -9`
    do) while two workers train. They used to live on (parent pid 1), holding the run locks,
    and the rerun refused those models. Here the workers are frozen at step 8 (so the kill
    surely lands mid-training); after the kill no process of the sweep may remain."""
    out = tmp_path / "out"
    proc = start_cli(out, fault="train_step:8:hang", jobs=2)
    try:
        deadline = time.monotonic() + 300
        runs = [run_dir(out, run_folder_name(m, "S", 2)) for m in ("pom", "mha")]
        while not all((r / "checkpoints" / "step_00000005.pt").exists() for r in runs):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the workers never reached step 5"
            time.sleep(0.1)
        assert len(session_members(proc.pid)) >= 3               # main + 2 workers (+ tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        deadline = time.monotonic() + 30
        while session_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = session_members(proc.pid)
    finally:
        kill_session(proc.pid)
    assert not left, f"processes of the killed sweep still running: {left}"
    sweep(out)                                                   # the rerun (in-process: faster)
    err = capfd.readouterr().err
    assert err.count("died holding it") == 2                     # the dead workers' run locks
    assert (out / "results.csv").read_text() == straight


# --- locks ---------------------------------------------------------------------------------------

def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_a_lock_left_by_a_dead_holder_is_taken_over_with_a_notice(tmp_path, capfd):
    import socket
    cfg = config(tmp_path, mixers="pom", steps=2, eval_points=1)
    folder = run_dir(cfg.out, run_folder_name("pom", "S", 2))
    folder.mkdir(parents=True)
    record = json.dumps({"pid": _dead_pid(), "host": socket.gethostname()})
    (folder / ".train.lock").write_text(record)               # its holder was killed
    assert run_model(cfg, "pom", "S") == 1
    err = capfd.readouterr().err
    assert err.count("notice:") == 1 and "died holding it" in err
    assert (folder / ".train.lock").read_text() == ""          # released cleanly this time


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_a_lock_still_held_for_a_dead_holder_is_broken(tmp_path, capfd):
    """flock is released when the holder dies, unless a process that inherited its descriptor
    lives on; a lock whose recorded holder is dead is then broken, never waited for."""
    import fcntl
    import socket
    cfg = config(tmp_path, mixers="pom", steps=2, eval_points=1)
    folder = run_dir(cfg.out, run_folder_name("pom", "S", 2))
    folder.mkdir(parents=True)
    with open(folder / ".train.lock", "w") as inherited:
        fcntl.flock(inherited, fcntl.LOCK_EX)                 # still held ...
        inherited.write(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
        inherited.flush()                                     # ... for a holder that is gone
        assert run_model(cfg, "pom", "S") == 1
    assert "breaking it" in capfd.readouterr().err
    # a live holder is respected
    with run_lock(folder, "DiPoM-S/2"):
        with pytest.raises(RuntimeError, match="being trained by another job"):
            with run_lock(folder, "DiPoM-S/2"):
                pass


# --- checkpoints and a full disk -----------------------------------------------------------------

class Stop(Exception):
    pass


def stop_at(model: str, step: int):
    def callback(trainer, row):
        if trainer.model.name == model and trainer.step >= step:
            raise Stop
    return callback


def test_a_corrupt_checkpoint_is_detected_and_the_previous_one_used(straight, tmp_path, capfd):
    out = tmp_path / "out"
    with pytest.raises(Stop):                                  # DiPoM-S/2 stopped at step 11
        sweep(out, callbacks=[stop_at("DiPoM-S/2", 11)])
    folder = run_dir(out, run_folder_name("pom", "S", 2))
    latest = list_checkpoints(folder)
    assert [p.name for p in latest] == ["step_00000006.pt", "step_00000010.pt"]
    data = latest[-1].read_bytes()
    latest[-1].write_bytes(data[: len(data) // 2])            # truncated (a disk fault, a bad copy)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(latest[-1])
    sweep(out)
    err = capfd.readouterr().err
    assert "step_00000010.pt' is truncated or corrupt" in err and "checkpoint before it" in err
    assert (out / "results.csv").read_text() == straight      # resumed from step 6: same numbers
    assert (folder / "checkpoints" / "step_00000010.pt.corrupt").exists()


def test_a_checkpoint_that_does_not_read_back_keeps_the_previous_ones(tmp_path, monkeypatch):
    from pomlab import train as train_module
    from pomlab.scaling import train_config
    trainer = train_module.Trainer(train_config(config(tmp_path), "pom", "S"), progress=False)
    trainer.run(until=3)
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(EOFError("cut")))
    with pytest.raises(OSError, match="did not verify after writing"):
        trainer.run(until=4)
    monkeypatch.setattr(torch, "load", real_load)
    assert [p.name for p in list_checkpoints(trainer.out)] == ["step_00000003.pt"]


@pytest.mark.parametrize("victim", ["checkpoint", "evals"])
def test_a_full_disk_gives_a_clear_error_and_corrupts_nothing(victim, straight, tmp_path,
                                                              monkeypatch):
    """ENOSPC in the middle of writing a checkpoint (torch.save) or a run's evals.csv (the
    CSV writer): a clear error, every file already written intact, and the rerun (disk freed)
    writes the same results.csv."""
    out = tmp_path / "out"
    folder = run_dir(out, run_folder_name("pom", "S", 2))
    calls = {"n": 0}

    def disk_full_after_some(real, first_arg_is_file):
        def fake(*args, **kwargs):
            target = args[1] if first_arg_is_file else args[0]
            calls["n"] += 1
            if calls["n"] >= 3:                                 # the 3rd write: half, then full
                target.write(b"\0" * 64 if "b" in getattr(target, "mode", "b") else "x" * 64)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*args, **kwargs)
        return fake

    if victim == "checkpoint":
        monkeypatch.setattr(torch, "save", disk_full_after_some(torch.save, True))
    else:
        real = pd.DataFrame.to_csv

        def to_csv(frame, target=None, *args, **kwargs):
            if target is not None and "digits-FID" in frame.to_string():    # an evals row
                return disk_full_after_some(lambda f, t: real(f, t, *args, **kwargs), True)(
                    frame, target)
            return real(frame, target, *args, **kwargs)
        monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    with pytest.raises(OSError, match="no space left on the device writing .*files already "
                                      "written are intact") as caught:
        sweep(out)
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert not stray_temp_files(out)
    for ckpt in list_checkpoints(folder):
        load_checkpoint(ckpt)                                   # every checkpoint reads back
    if (folder / "evals.csv").exists():
        assert len(pd.read_csv(folder / "evals.csv")) >= 1
    sweep(out)
    assert (out / "results.csv").read_text() == straight
