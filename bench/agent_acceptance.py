"""Acceptance for agent distillation on GSM8K: students that learn, measured honestly.

    python bench/agent_acceptance.py --preset gpu --gold-db gold.db        # the H200 run (bf16, CUDA)
    python bench/agent_acceptance.py --preset cpu --gold-db gold.db        # the 2-core CPU run
    python bench/agent_acceptance.py --preset smoke --work /tmp/acc        # minutes on a CPU (the test)

The gold DB comes from ``symkd agent generate --source gold-rationales --data train.jsonl
--db gold.db [--variants K]`` (converted here once: it needs only the sandbox). For each
training size N (the first N GSM8K train problems) it trains an agent student on their
gold-rationale trajectories and a CoT student on the same problems' worked solutions at the
agent's training-token budget, and evaluates both on the same first ``--test`` problems of
GSM8K test (accuracy, 95 % Wilson interval, exact McNemar test of the pair). Then, on one
size: program-variant augmentation (1x/4x/16x), maj@K self-consistency, one round of verified
self-training with SFT and with the REDI loss on the same positives, and the base model.
Settings run in the preset's order; each is written to ``--out`` as soon as it finishes, and
none starts past ``--deadline-s`` (the rest are listed as skipped), so a run cut short keeps
what it measured. ``--plan`` and ``--epochs`` replace the preset's plan and epochs; with
``--resume`` a run of one setting is paired (McNemar) with the settings the record already holds.
``epochs:N:E`` trains agent_N's data for E epochs instead (under-training or too few programs?).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _acceptance_steps as steps  # noqa: E402
from _acceptance_gold import SIZED, gold_for_plan  # noqa: E402
from _acceptance_run import Run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"plan": ["size:8", "variants:8:4", "votes:8", "sag:8", "self:8", "base"], "sizes": [8], "test": 4, "epochs": 1.0, "max_steps": 2, "max_tokens": 48, "cot_tokens": 64,
              "batch_size": 4, "eval_batch": 8, "wave": 8, "votes": 2, "sag": 2, "self_train": 4,
              "self_samples": 2, "extra_size": 8, "base": True, "lr": 1e-4, "max_length": 640, "redi_lr": 1e-5, "redi_epochs": 1.0},
    "cpu": {"plan": ["size:250", "size:1000", "variants:250:4", "votes:250", "sag:250", "self:250", "size:2000", "base"],
            "sizes": [250, 1000, 2000], "test": 500, "epochs": 2.0, "max_steps": 5, "max_tokens": 160,
            "cot_tokens": 256, "batch_size": 8, "eval_batch": 32, "wave": 64, "votes": 4, "sag": 4,
            "self_train": 250, "self_samples": 4, "extra_size": 250, "base": True, "lr": 1e-4, "max_length": 640,
            "redi_lr": 1e-5, "redi_epochs": 1.0},
    "gpu": {"plan": ["size:all", "variants:all:16", "size:1000", "variants:1000:16", "size:250", "votes:all", "sag:all",
                     "self:1000", "size:2000", "variants:1000:4", "base"],
            "sizes": [None, 2000, 1000, 250], "test": 500, "epochs": 3.0, "max_steps": 5, "max_tokens": 160,
            "cot_tokens": 256, "batch_size": 32, "eval_batch": 512, "wave": 512, "votes": 4, "sag": 4,
            "self_train": 500, "self_samples": 4, "extra_size": 1000, "base": True, "lr": 1e-4, "max_length": 640,
            "redi_lr": 1e-5, "redi_epochs": 1.0, "save_every": 100000},
}  # fmt: skip


def common_train(args: argparse.Namespace, p: dict[str, Any]) -> dict[str, Any]:
    return {"base_model": args.base_model, "batch_size": p["batch_size"], "max_length": p["max_length"],
            "eval_fraction": 0.0, "lr": p["lr"], "device": args.device,
            **({"save_every": p["save_every"]} if p.get("save_every") else {})}  # fmt: skip


def eval_config(args: argparse.Namespace, p: dict[str, Any]) -> dict[str, Any]:
    return {"max_steps": p["max_steps"], "max_tokens": p["max_tokens"], "cot_tokens": p["cot_tokens"],
            "sandbox": args.sandbox, "wave": p["wave"], "batch_size": p["eval_batch"], "dtype": args.eval_dtype}  # fmt: skip


def dtype_suffix(args: argparse.Namespace) -> str:
    """``@bfloat16`` for an evaluation in a dtype other than the default (its own setting name and cache keys)."""
    return "" if args.eval_dtype == "auto" else f"@{args.eval_dtype}"


def trained_and_evaluated(run: Run, name: str, mode: str, data: Any, *, epochs: float | None = None,
                          budget: int | None = None, n_problems: int, extra: dict | None = None) -> dict[str, Any]:  # fmt: skip
    args, p = run.args, run.preset
    common = {**common_train(args, p), **(extra or {})}
    info = steps.train_student(name, data, args.work / name, common, epochs=epochs, budget=budget)
    run.students[name] = info
    kept = run.retrained(name, info)
    if kept is not None:
        return kept
    metrics, outcome = steps.evaluate(f"hf:{args.work / name}", mode, args.test_file, args.work / "eval.db", p["test"],
                                      eval_config(args, p))  # fmt: skip
    run.outcomes[name] = outcome
    return {"mode": mode, "n_train_problems": n_problems, **metrics, **info}


def agent_student(run: Run, n: int | None, epochs: float | None = None, name: str | None = None) -> tuple[list, list]:
    """The agent student on the first ``n`` train problems (None: all): trained, resumed or retrained.
    Returns those problems and their gold trajectories."""
    args, p = run.args, run.preset
    tasks = steps.train_tasks(args.data_dir, n)
    rows = steps.gold_rows(args.gold_db, tasks)
    label = str(n or "all")
    name = name or f"agent_{label}"
    agent_data = steps.agent_training_data(rows, args.base_model, args.gold_db, label=f"first {label}")
    run.setting(name, lambda: trained_and_evaluated(run, name, "agent", agent_data, epochs=epochs or p["epochs"],
                                                    n_problems=len(tasks)))  # fmt: skip
    return tasks, rows


def variant_students(run: Run, label: str) -> list[str]:
    """agent_LABEL_xK settings of this run or the record (program variants at K x data)."""
    prefix = f"agent_{label}_x"
    return [o for o in sorted(set(run.outcomes) | set(run.previous)) if o.startswith(prefix) and o[len(prefix):].isdigit()]


def longer_training(run: Run, n: int | None, epochs: float) -> None:
    """``epochs:N:E``: the agent student on the same gold trajectories as agent_N, trained E epochs
    (is it under-trained?), paired with agent_N, with agent_N's variant students (more data at a
    similar token budget: more steps or more programs?) and with cot_N, each also in --eval-dtype
    where that was recorded."""
    label = str(n or "all")
    name = f"agent_{label}_e{epochs:g}{dtype_suffix(run.args)}"
    agent_student(run, n, epochs=epochs, name=name)
    sfx = dtype_suffix(run.args)
    for other in [f"agent_{label}", *variant_students(run, label), f"cot_{label}"]:  # CoT: at its own budget
        run.compare(name, other)
        if sfx:
            run.compare(name, f"{other}{sfx}")  # the same dtype: no confound


def size_pair(run: Run, n: int | None) -> None:
    """Agent vs CoT student on the first ``n`` train problems (None: all), equal token budgets; with
    --eval-dtype both names carry its suffix (agent_N@bfloat16: not agent_N's fp32 result)."""
    label, sfx = str(n or "all"), dtype_suffix(run.args)
    agent, cot_name = f"agent_{label}{sfx}", f"cot_{label}{sfx}"
    tasks, rows = agent_student(run, n, name=agent)
    budget = (run.students.get(agent) or {}).get("train_tokens")
    if budget:
        cot = steps.cot_data(tasks, rows, run.args.work / f"cot_{label}.jsonl")
        run.setting(cot_name, lambda: trained_and_evaluated(run, cot_name, "cot", cot, budget=budget,
                                                             n_problems=len(tasks)))  # fmt: skip
    run.compare(agent, cot_name)


def variants(run: Run, n: int | None, factor: int) -> None:
    """Gold + up to factor-1 program variants per problem, same epochs as the 1x student."""
    args, p = run.args, run.preset
    tasks = steps.train_tasks(args.data_dir, n)
    rows = steps.gold_rows(args.gold_db, tasks)
    extra = steps.gold_rows(args.gold_db, tasks, sources=("gold-variants",))
    per_parent: dict[str, int] = {}
    chosen = []
    for row in extra:
        parent = steps._parent(row)
        if per_parent.get(parent, 0) < factor - 1:
            per_parent[parent] = per_parent.get(parent, 0) + 1
            chosen.append(row)
    label = str(n or "all")
    name = f"agent_{label}_x{factor}"
    if not chosen:
        run.doc["settings"].append({"name": name, "skipped": "no gold-variants in the gold DB"})
        return
    data = steps.agent_training_data(rows + chosen, args.base_model, args.gold_db, label=f"first {label} + variants x{factor}")
    run.setting(name, lambda: {**trained_and_evaluated(run, name, "agent", data, epochs=p["epochs"], n_problems=len(tasks)),
                               "variant_trajectories": len(chosen)})  # fmt: skip
    run.compare(name, f"agent_{label}")
    for other in variant_students(run, label):  # the other factors at this size
        if other != name:
            run.compare(name, other)


def trained_again(run: Run, student: str) -> None:
    """``--retrain`` on a new machine: agent_N's weights (N a size or ``all``) are trained again when its
    folder is missing, so a votes:, sag:, eval: or self: item needs no size: item before it."""
    label = student.removeprefix("agent_")
    if run.args.retrain and not (run.args.work / student / "config.json").is_file():
        if not (label.isdigit() or label == "all"):
            raise SystemExit(f"bench: --retrain: {student} is not a plain size's student; run its variants: item first")
        agent_student(run, None if label == "all" else int(label))


#: test-time sampling: the preset key that gives K, and the setting name's mark (agent_250_maj4, agent_250_sag4)
SAMPLING = {"votes": "maj", "sag": "sag"}


def sampled(run: Run, student: str, how: str, k: int | None = None) -> None:
    """maj@K (``votes``: K sampled episodes, majority vote on the answer) or SAG-K (``sag``: K sampled
    actions per step, vote among those that run) of ``student``, paired with its greedy run (and its
    greedy run in the same dtype, when recorded). K: ``k``, else the preset's."""
    args, p = run.args, run.preset
    trained_again(run, student)
    k, suffix = k or p[how], dtype_suffix(args)  # a student trained by a size: item in that dtype already carries it
    name = f"{student.removesuffix(suffix) if suffix else student}_{SAMPLING[how]}{k}{suffix}"

    def go() -> dict[str, Any]:
        metrics, outcome = steps.evaluate(f"hf:{args.work / student}", "agent", args.test_file, args.work / "eval.db",
                                          p["test"], eval_config(args, p), **{how: k})  # fmt: skip
        run.outcomes[name] = outcome
        return {"mode": "agent", how: k, **metrics}

    run.setting(name, go)
    run.compare(name, student)
    if suffix and not student.endswith(suffix):
        run.compare(name, f"{student}{suffix}")


def evaluated_again(run: Run, student: str) -> None:
    """``eval:LABEL``: the student agent_LABEL evaluated greedily again in ``--eval-dtype``, paired with its
    first run and with a maj@K of it recorded in the same dtype."""
    args, p = run.args, run.preset
    if not dtype_suffix(args):
        raise SystemExit("bench: an eval: plan item needs --eval-dtype (the default dtype's result is already recorded)")
    name = f"{student}{dtype_suffix(args)}"
    trained_again(run, student)

    def go() -> dict[str, Any]:
        metrics, outcome = steps.evaluate(f"hf:{args.work / student}", "agent", args.test_file, args.work / "eval.db",
                                          p["test"], eval_config(args, p))  # fmt: skip
        run.outcomes[name] = outcome
        return {"mode": "agent", **metrics}

    run.setting(name, go)
    run.compare(name, student)
    for voted in sorted(set(run.outcomes) | set(run.previous)):  # a maj@K or SAG-K measured before this greedy run
        if voted.startswith((f"{student}_maj", f"{student}_sag")) and voted.endswith(dtype_suffix(args)):
            run.compare(voted, name)


def self_train_and_redi(run: Run, student: str, n: int | None) -> None:
    """One verified self-training round from ``student``; retrain with SFT and with REDI on the same
    positives (REDI's negatives paired with them: per problem one failed episode per positive).
    With ``--eval-dtype`` the sampling runs in that dtype too, and the settings carry its suffix."""
    from symkd.pipelines.agents import self_train as st
    from symkd.store.db import Store

    args, p, sfx = run.args, run.preset, dtype_suffix(run.args)
    trained_again(run, student)
    tasks = steps.train_tasks(args.data_dir, p["self_train"])
    cfg = st.SelfTrainConfig(rounds=1, samples=p["self_samples"], max_steps=p["max_steps"], max_tokens=p["max_tokens"],
                             sandbox=args.sandbox, wave=p["wave"])  # fmt: skip
    options = {"batch_size": p["eval_batch"], **({"dtype": args.eval_dtype} if sfx else {})}
    sampled: dict[str, Any] = {}

    def sample() -> dict[str, Any]:
        with Store(args.gold_db) as store:
            # about an hour on a CPU for the cpu preset: with a progress bar
            rows = st.sample_round(store, f"hf:{args.work / student}", tasks, 1, cfg, options, True)
        sampled["rows"] = rows
        return {"sampled": len(rows), "correct": sum(r["correct"] for r in rows), "problems": len(tasks)}

    run.setting(f"{student}_self_sample{sfx}", sample)
    if "rows" not in sampled:
        return
    problems = steps.train_tasks(args.data_dir, n)
    gold = steps.gold_rows(args.gold_db, problems)
    seen: dict[str, set[str]] = {}
    st.new_positives(gold, seen)
    positives = st.new_positives(sampled["rows"], seen)
    negatives = st.paired_negatives(gold + positives, sampled["rows"])
    sft_name, redi_name = f"self_round1_sft{sfx}", f"self_round1_redi{sfx}"
    sft = steps.agent_training_data(gold + positives, args.base_model, args.gold_db, label="gold + self-round-1")
    redi = steps.agent_training_data(gold + positives, args.base_model, args.gold_db, negatives=negatives,
                                     label="gold + self-round-1, REDI negatives")  # fmt: skip
    # the paper's two stages: SFT on the positives, then REDI from that student at a lower lr; the SFT
    # student is the control. REDI is evaluated first, so a run cut by its deadline still measures it.
    stage2 = {"loss": "redi", "base_model": str(args.work / sft_name), "lr": p["redi_lr"]}

    def redi_student() -> dict[str, Any]:
        steps.train_student(sft_name, sft, args.work / sft_name, common_train(args, p), epochs=p["epochs"])  # stage 1
        return {**trained_and_evaluated(run, redi_name, "agent", redi, epochs=p["redi_epochs"], n_problems=len(problems),
                                        extra=stage2), "negatives": len(negatives), "stage": f"2, from {sft_name}"}  # fmt: skip

    run.setting(redi_name, redi_student)
    run.setting(sft_name, lambda: {**trained_and_evaluated(run, sft_name, "agent", sft, epochs=p["epochs"], n_problems=len(problems)),
                                   "positives_added": len(positives)})  # fmt: skip
    for name in (sft_name, redi_name):
        run.compare(name, student)
        if sfx:
            run.compare(name, f"{student}{sfx}")
    run.compare(redi_name, sft_name)


def compared(run: Run, a: str, b: str) -> None:
    """``compare:A:B``: the exact McNemar test of two settings this run or the record (--resume) holds."""
    missing = [name for name in (a, b) if run.outcome(name) is None]
    if missing:
        raise SystemExit(f"bench: compare: no per-item outcomes for {', '.join(missing)} (a recorded setting? --resume?)")
    run.compare(a, b)


def base_model(run: Run, modes: tuple[str, ...] = ("agent", "cot")) -> None:
    args, p = run.args, run.preset
    from symkd.teachers.embedded import locate

    spec = f"hf:{locate('smollm2')}" if args.base_model == "smollm2" else f"hf:{args.base_model}"
    for mode in modes:
        name = f"base_{mode}{dtype_suffix(args)}"

        def go(mode: str = mode, name: str = name) -> dict[str, Any]:
            metrics, outcome = steps.evaluate(spec, mode, args.test_file, args.work / "eval.db", p["test"],
                                              eval_config(args, p), few_shot=mode == "agent")  # fmt: skip
            run.outcomes[name] = outcome
            return {"mode": mode, "n_train_problems": 0, "few_shot": mode == "agent", **metrics}

        run.setting(name, go)
        for student in [n for n in run.outcomes if n.startswith(f"{mode}_")]:
            run.compare(student, name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--gold-db", type=Path, help="DB with gold-rationales (+ gold-variants); converted when missing")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "gsm8k")
    ap.add_argument("--work", type=Path, default=Path("agent_acceptance"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "agent_acceptance.json")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--sandbox", default="bwrap", help="bwrap | rlimit (a throwaway machine without bubblewrap)")
    ap.add_argument("--base-model", default="smollm2")
    ap.add_argument("--deadline-s", type=float, default=float("inf"), help="start no setting after this many seconds")
    ap.add_argument("--plan", default="", help="comma list replacing the preset's plan, e.g. size:250,base,size:1000 (base:cot: the base model in one mode; votes:250_x4: maj@K of the student agent_250_x4; sag:250: SAG-K of agent_250 (sag:250:2: K = 2); eval:250_x4: that student again in --eval-dtype; epochs:250:6: agent_250's data for 6 epochs; compare:A:B: exact McNemar of two recorded settings)")
    ap.add_argument("--resume", action="store_true", help="reuse the settings --out already holds (a killed run goes on)")
    ap.add_argument("--keep-lost", action="store_true",
                    help="with --resume: keep a finished setting whose per-item predictions are gone (no paired test)")
    ap.add_argument("--retrain", action="store_true",
                    help="with --resume: train a finished student again when its folder is not in --work (a new machine), "
                    "keeping its recorded evaluation, so votes:, sag:, eval: and self: items can use it")
    ap.add_argument("--only", default="", help="comma list of plan kinds: size,variants,votes,sag,self,base (default all)")
    ap.add_argument("--eval-dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                    help="the students' dtype in evaluation (auto: float32 on a CPU; bfloat16 about halves the time on a CPU "
                    "with AVX512-BF16); a dtype other than auto is part of the setting's name (agent_250_x4_maj4@bfloat16)")
    ap.add_argument("--epochs", type=float, help="epochs for every student this run trains (default: the preset's; "
                    "each setting records its own)")
    args = ap.parse_args(argv)
    args.test_file = args.data_dir / "test.jsonl"
    args.gold_db = args.gold_db or args.work / "gold.db"
    return args


def preset_for(args: argparse.Namespace) -> dict[str, Any]:
    """The preset's settings, with the command line's overrides (``--epochs``)."""
    return {**PRESETS[args.preset], **({"epochs": args.epochs} if args.epochs else {})}


def new_run(args: argparse.Namespace) -> Run:
    """The result document of this command: the preset with its overrides; the record keeps the preset as written."""
    return Run(args, preset_for(args), PRESETS[args.preset])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    args.gold_db.parent.mkdir(parents=True, exist_ok=True)  # converted there when missing, after minutes of work
    run = new_run(args)
    p = run.preset
    only = set(args.only.split(",")) if args.only else None
    plan = [item for item in (args.plan.split(",") if args.plan else p["plan"]) if only is None or item.split(":")[0] in only]
    gold_for_plan(run, plan)
    for item in plan:
        kind, *rest = item.split(":")
        sizes = [None if r == "all" else int(r) for r in rest[:1] if kind in SIZED]
        label = rest[0] if rest else ""
        if kind == "size":
            size_pair(run, sizes[0])
        elif kind == "variants":
            variants(run, sizes[0], int(rest[1]))
        elif kind in SAMPLING and p[kind]:
            sampled(run, f"agent_{label}", kind, int(rest[1]) if len(rest) > 1 else None)
        elif kind == "epochs":
            longer_training(run, sizes[0], float(rest[1]))
        elif kind == "eval":
            evaluated_again(run, f"agent_{label}")
        elif kind == "self" and p["self_train"]:
            self_train_and_redi(run, f"agent_{label}", sizes[0])
        elif kind == "compare":
            compared(run, *rest[:2])
        elif kind == "base" and p["base"]:
            base_model(run, tuple(rest) or ("agent", "cot"))  # base:cot evaluates only that mode
    run.save()
    return run.doc


if __name__ == "__main__":
    from symkd.interrupts import Interrupted

    try:
        main()
    except Interrupted as stop:  # what finished is in --out and the work folder's DB
        sys.exit(f"bench: interrupted ({stop}); rerun the same command with --resume to go on")
