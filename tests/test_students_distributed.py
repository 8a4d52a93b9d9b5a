"""symkd train under torchrun: 2 CPU processes (gloo) equal one process with the same global batch, and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from symkd.pipelines.commonsense.comet import from_triples
from symkd.students.train import TrainConfig, train
from tests.fixtures.tiny_lm import make_tiny_lm  # noqa: F401  (the tiny_lm fixture's module)
from tests.test_students_train import TRIPLES

pytestmark = pytest.mark.slow

#: each rank runs this: train on the triples with the JSON config; optionally "die" after N checkpoints
RANK_SCRIPT = """
import json, os, sys
from symkd.students import train as train_module
from symkd.pipelines.commonsense.comet import from_triples
from symkd.students.train import TrainConfig, train

triples, config, die_after = json.loads(open(sys.argv[1]).read())
if die_after:
    real_save, calls = train_module.checkpoints.save, []
    def save_then_die(*args, **kwargs):
        path = real_save(*args, **kwargs)
        calls.append(path)
        if len(calls) == die_after:
            raise SystemExit(3)  # rank 0 dies after this checkpoint; torchrun stops the other rank
        return path
    train_module.checkpoints.save = save_then_die
summary = train(from_triples([tuple(t) for t in triples]), TrainConfig(**config), progress=False)
if os.environ.get("RANK", "0") == "0":  # one rank reports: two ranks' prints can interleave on one line
    print("SUMMARY " + json.dumps({k: summary[k] for k in ("steps", "final", "evals", "history", "global_batch")}), flush=True)
"""

# 21 examples for training (6 held out): the last global micro-batch of an epoch has one row, so rank 1
# trains on a masked stand-in there
EXTRA = [("PersonX walks the dog", "xIntent", "to give it exercise"), ("PersonX reads a book", "xWant", "to learn"),
         ("PersonX plants a tree", "xEffect", "gets dirty hands")]  # fmt: skip


def _config(out: Path, base: Path, batch_size: int) -> dict:
    return {"out": str(out), "base_model": str(base), "max_steps": 6, "batch_size": batch_size, "grad_accum": 2,
            "lr": 3e-3, "eval_fraction": 0.2, "save_every": 2, "device": "cpu", "precision": "fp32", "seed": 0}  # fmt: skip


def _torchrun(tmp: Path, config: dict, die_after: int = 0) -> tuple[int, dict | None, str]:
    script, args = tmp / "rank.py", tmp / f"args-{Path(config['out']).name}-{die_after}.json"
    script.write_text(RANK_SCRIPT)
    args.write_text(json.dumps([TRIPLES + EXTRA, config, die_after]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SUMMARY ")]
    return proc.returncode, json.loads(lines[0][8:]) if lines else None, proc.stdout[-3000:] + proc.stderr[-3000:]


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _close(a: dict, b: dict, atol: float = 2e-5) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol) for k in a)


def test_two_processes_equal_one_with_the_same_global_batch_and_resume(tmp_path: Path, tiny_lm: Path) -> None:
    single_cfg = _config(tmp_path / "single", tiny_lm, batch_size=4)
    single = train(from_triples(TRIPLES + EXTRA), TrainConfig(**single_cfg), progress=False)
    assert single["data"]["train_examples"] % 4 == 1  # the masked stand-in row is exercised

    rc, ddp, log = _torchrun(tmp_path, _config(tmp_path / "ddp", tiny_lm, batch_size=2))
    assert rc == 0, log
    assert ddp["global_batch"] == single["global_batch"] == 8
    assert [h["step"] for h in ddp["history"]] == list(range(1, 7))
    for a, b in zip(ddp["history"], single["history"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)  # logged loss: the global token mean
    assert ddp["evals"][-1]["eval_loss"] == pytest.approx(single["evals"][-1]["eval_loss"], abs=1e-4)  # reduced over ranks
    assert _close(_weights(tmp_path / "ddp"), _weights(tmp_path / "single"))
    for name in ("README.md", "training.json", "training_curve.png"):
        assert (tmp_path / "ddp" / name).is_file()

    killed_cfg = _config(tmp_path / "killed", tiny_lm, batch_size=2)
    rc, _, log = _torchrun(tmp_path, killed_cfg, die_after=2)
    assert rc != 0, log
    assert (tmp_path / "killed" / "checkpoints" / "step-00000004").is_dir(), log
    assert not (tmp_path / "killed" / "training.json").exists()
    rc, resumed, log = _torchrun(tmp_path, killed_cfg)
    assert rc == 0, log
    assert [h["step"] for h in resumed["history"]] == list(range(1, 7))
    assert _close(_weights(tmp_path / "killed"), _weights(tmp_path / "ddp"), atol=1e-6)
