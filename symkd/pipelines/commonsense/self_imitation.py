"""I2D2 self-imitation: the student trained on the critics' picks becomes the next generator.

Round ``k`` (1-based) trains student ``k`` on every triple the critics kept from rounds
``0..k-1`` (round 0 is the teacher), evaluates it when evaluation data is given, and -- unless
it is the last round -- lets it sample new tails for the same (head, relation) pairs. Its
triples are stored with ``source = 'student'`` and ``round = k``, go through the same critics,
and join the union the next student learns from. Counts per round go to
``self_imitation_rounds``, scores to ``evaluations``, training summaries to ``training_runs``.

Student generations are a :class:`~symkd.stages.Stage` (:class:`StudentStage`) and go through
the request cache like a teacher's (backend ``hf``, the student folder as model); each
request's sampling seed is derived from the student's training fingerprint, so a retrained
student never reuses an older student's answers, and a killed round resumes where it stopped.
One progress bar counts the rounds and names the current step (training, evaluating,
sampling); nothing is printed when ``progress`` is False.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from symkd.graphs.triples import add_triples, curated_triples, event_id
from symkd.pipelines.commonsense.names import derive_seed
from symkd.errors import UserError
from symkd.store.db import Store, utcnow
from symkd.stages import Stage, run_stage
from symkd.teachers.messages import GenerationParams, Request, Response

STUDENT_SAMPLING = {"temperature": 0.9, "top_p": 0.95, "max_tokens": 24, "stop": ["\n"]}


class StudentStage(Stage[tuple[str, str], list[tuple[int, str]]]):
    """Rows are (head, relation): one request for ``samples`` student tails each (COMET prompt,
    seed derived from the student's training fingerprint); the parse is the usable tails, in
    completion order, each with the index of the sample it came from."""

    name = "student tails"

    def __init__(self, *, fingerprint: str, samples: int, seed: int, round: int):
        self.fingerprint, self.samples, self.seed, self.round = fingerprint, samples, seed, round
        #: one run kind per round, as before the Stage: the run log keeps the rounds apart
        self.kind = f"self-imitation-round-{round}"

    def request(self, head: str, relation: str) -> Request:
        from symkd.pipelines.commonsense.comet import comet_prompt

        seed = derive_seed(self.seed, "student", self.fingerprint, head, relation)
        params = GenerationParams(n=self.samples, seed=seed, **STUDENT_SAMPLING)
        return Request(id=f"student:{relation}:{head}", prompt=comet_prompt(head, relation), params=params)

    def requests(self, rows: Sequence[tuple[str, str]]) -> list[Request]:
        return [self.request(head, relation) for head, relation in rows]

    def parse(self, row: tuple[str, str], response: Response) -> list[tuple[int, str]]:
        from symkd.pipelines.commonsense.inferences import parse_tail
        from symkd.students.generate import clean_output

        tails = []
        for index, completion in enumerate(response.completions):
            tail, _ = parse_tail(clean_output(completion.text), {})
            if tail:
                tails.append((index, tail))
        return tails


def generate_round(store: Store, student_dir: Path, fingerprint: str, pairs: Sequence[tuple[str, str]], *,
                   round: int, samples: int, seed: int, progress: bool, batch_size: int = 16) -> dict[str, int]:  # fmt: skip
    """The student samples tails for ``pairs``; new triples are stored for round ``round``."""
    from symkd.scale.context import use_executor
    from symkd.session import TeacherSession

    if not pairs:
        return {"requests": 0, "samples": 0, "tails": 0, "new": 0}
    stage = StudentStage(fingerprint=fingerprint, samples=samples, seed=seed, round=round)
    # the student answers as a teacher would (backend hf, its folder as model, cached like one),
    # in this process as before: the folder is local, so no executor of the caller's serves it
    with use_executor(None), TeacherSession(f"hf:{student_dir}", store, options={"batch_size": batch_size},
                                            progress=progress) as session:  # fmt: skip
        answers = run_stage(session, stage, pairs, config={"round": round, "student": fingerprint},
                            label=f"round {round}: student {round} tails")  # fmt: skip
    rows, n_samples = [], 0
    for answer in answers:
        if not answer.answered:
            continue
        head, relation = answer.row
        n_samples += len(answer.response.completions)
        for index, tail in answer.parsed or []:
            rows.append({"head": head, "relation": relation, "tail": tail, "head_id": event_id(head),
                         "source": "student", "round": round, "run_id": answers.result.run_id,
                         "response_key": answer.key, "sample": index})  # fmt: skip
    new = add_triples(store, rows)
    return {"requests": len(pairs), "samples": n_samples, "tails": len(rows), "new": new,
            "failed": answers.result.failed}  # fmt: skip


def run_rounds(
    store: Store,
    *,
    rounds: int,
    critic_names: Sequence[str],
    apply_critics: Any,  # callable(store) -> None: the run's critics over the run's heads
    pairs: Sequence[tuple[str, str]],
    student_dir: str | Path,
    train_options: dict[str, Any],
    eval_data: str | Path | None,
    eval_split: str,
    samples: int,
    seed: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Train ``rounds`` students, each on the union kept so far; return one row per round.

    One progress bar counts the rounds; its description names the round's current step
    (training, evaluating, sampling).
    """
    from symkd.pipelines.commonsense.comet import from_triples
    from symkd.pipelines.commonsense.evaluate import evaluate_commonsense
    from symkd.progress import bar
    from symkd.students.records import record_training
    from symkd.students.train import TrainConfig, train

    root = Path(student_dir)
    if not root.parent.exists():
        raise UserError(f"{root}: folder {root.parent} does not exist")
    root.mkdir(exist_ok=True)
    out_rows: list[dict[str, Any]] = []
    teacher_rows = store.scalar("select count(*) from triples where round = 0")
    generated: dict[str, Any] = {"generator": "teacher", "new": teacher_rows}
    with bar(range(1, rounds + 1), desc="self-imitation", unit="round", enabled=progress) as steps:
        for k in steps:
            union = curated_triples(store, critics=critic_names, rounds=list(range(k)))
            if not union:
                raise UserError(f"round {k}: the critics kept no triples to train a student on")
            data = from_triples(union, {"kind": "db", "path": str(store.path), "critics": list(critic_names),
                                        "rounds": list(range(k)), "rows": len(union)})  # fmt: skip
            out = root / f"round-{k}"
            _step(steps, f"round {k}: training on {len(union)} kept triples")
            config = TrainConfig.model_validate({**train_options, "out": out, "seed": seed})
            summary = train(data, config, progress=progress)
            run_id = record_training(store, summary, out, round=k)
            evaluation = None
            scores: dict[str, Any] = {}
            if eval_data is not None:
                _step(steps, f"round {k}: evaluating ({eval_split})")
                report = evaluate_commonsense(eval_data, model=out, split=eval_split, progress=progress, db=store,
                                              round=k)  # fmt: skip
                scores = {m: report[m] for m in ("bleu1", "bleu2", "rougeL", "cider")}
                evaluation = _latest_eval(store, str(out), k)
            kept_new = _kept(store, critic_names, k - 1)
            row = {"round": k, "generator": generated["generator"], "generated": generated["new"],
                   "kept": kept_new, "train_examples": summary["data"]["train_examples"], "student": str(out),
                   "training_run": run_id, "evaluation": evaluation, "created_at": utcnow()}  # fmt: skip
            with store.transaction() as db:
                db["self_imitation_rounds"].upsert(row, pk="round")
            out_rows.append({**row, "scores": scores})
            if k < rounds:
                _step(steps, f"round {k}: sampling {len(pairs)} pairs")
                counts = generate_round(store, out, summary["fingerprint"], pairs, round=k, samples=samples, seed=seed,
                                        progress=progress)  # fmt: skip
                if counts.get("failed"):
                    raise UserError(f"round {k}: {counts['failed']} student request(s) failed; rerun to retry")
                apply_critics(store)
                generated = {"generator": f"student round {k}", "new": counts["new"]}
    return out_rows


def _step(steps: Any, text: str) -> None:
    """Name the round's current step in the rounds bar; redraw it only once it shows (after its delay)."""
    shown = not steps.disable and steps._time() - steps.start_t >= steps.delay
    steps.set_description(text, refresh=shown)


def _kept(store: Store, critic_names: Sequence[str], round: int) -> int:
    return len(curated_triples(store, critics=critic_names, rounds=[round]))


def _latest_eval(store: Store, model: str, round: int) -> str | None:
    row = store.query("select id from evaluations where model = ? and round = ? order by created_at desc limit 1", (model, round))
    return row[0]["id"] if row else None


def rounds_table(store: Store) -> list[dict[str, Any]]:
    """The ``self_imitation_rounds`` rows joined with their evaluation scores."""
    return store.query(
        "select r.*, e.bleu1, e.rougeL, e.cider from self_imitation_rounds r "
        "left join evaluations e on e.id = r.evaluation order by r.round"
    )
