"""The ``agent`` command group.

    symkd agent generate --teacher smollm2 --task gsm8k --data train.jsonl --samples 1 --db run.db
    symkd agent generate --source gold-rationales --data train.jsonl --db run.db [--variants 3 --exclude test.jsonl]
    symkd agent export --db run.db --out traj.jsonl [--source gold-rationales]
    symkd agent export-cot --data train.jsonl --out cot.jsonl
    symkd agent train --db run.db --source gold-rationales --base-model smollm2 --out students/agent
    symkd agent self-train --db run.db --data train.jsonl --student students/agent --out students/self --rounds 2
    symkd agent eval --model students/agent --data test.jsonl [--sag 8 | --votes 8] [--max-agent-steps 5] [--limit 100]
    symkd agent index-corpus docs.jsonl --db run.db | symkd agent index-corpus --from-triples commonsense.db --db run.db
    symkd agent eval-gsm8k --model students/cot --data test.jsonl --mode cot|agent [--strategies DB]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Literal, Optional

import typer
from pydantic import BaseModel, ConfigDict, Field

from symkd.commandline import TEACHER_FORMS, build, model_options, teacher_option
from symkd.errors import UserError
from symkd.pipelines.agents.options import AgentConfig, SelfTrainConfig
from symkd.students.train import TrainConfig
from symkd.teachers.options import TeacherOptions

agent_app = typer.Typer(help="Agent distillation: CodeAct trajectories, students, evaluation.", no_args_is_help=True)

SOURCES = ("teacher", "gold-rationales")


def _print(report: dict[str, Any], as_json: bool) -> None:
    typer.echo(json.dumps(report, default=str) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))


def _tools(names: Optional[List[str]], corpus_db: Optional[Path], rerank: bool) -> list:
    from symkd.pipelines.agents.tools import load_tools

    return load_tools(list(names or []), corpus_db=corpus_db, rerank=rerank)


def _target(model: Optional[Path], teacher: Optional[str]) -> str:
    if (model is None) == (teacher is None):
        raise UserError("give exactly one of --model DIR (a student) or --teacher SPEC")
    if model is not None:
        if not model.exists():
            raise UserError(f"{model}: no such model folder or file")
        return f"hf:{model}"
    return teacher  # type: ignore[return-value]


def _only(*names: str) -> tuple[str, ...]:
    """The AgentConfig fields a command does not show as flags: all but ``names``."""
    return tuple(n for n in AgentConfig.model_fields if n not in names)


class GenerateOptions(BaseModel):
    """What ``agent generate`` generates (flags from model_options; the agent's are AgentConfig's)."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["gsm8k"] = Field("gsm8k", description="task family (gsm8k)")
    source: Literal["teacher", "gold-rationales"] = Field(
        "teacher", description="teacher | gold-rationales (GSM8K solutions as trajectories)")
    samples: int = Field(1, ge=1, description="trajectories per task (temperature 0.7 when more than 1)")
    first_thought: bool = Field(False, description="prefill the first Thought with the first paragraph of the teacher's CoT answer")
    limit: Optional[int] = Field(None, ge=1, description="first N tasks only")
    variants: int = Field(0, ge=0, description="gold-rationales: also up to K program variants per problem (source gold-variants)")
    exclude: Optional[Path] = Field(None, description="gold-rationales: JSONL of questions no task or variant may equal (a test set)")
    seed: int = Field(0, description="gold-rationales: seed of the variants' new numbers")


@model_options(TeacherOptions, "teacher_options")
@model_options(AgentConfig, "agent_options", exclude=_only("max_steps", "max_tokens", "sandbox"))
@model_options(GenerateOptions, "options")
def generate(
    db: Path = typer.Option(..., "--db", help="SQLite database (created when missing)"),
    data: Path = typer.Option(..., "--data", help="task file: GSM8K JSONL {question, answer}"),
    teacher: str = teacher_option(note="ignored for --source gold-rationales"),
    tools: Optional[List[str]] = typer.Option(None, "--tools", help="tool names (search) or module:attr of a LangChain BaseTool (repeatable)"),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="DB holding the search tool's corpus"),
    rerank: bool = typer.Option(False, "--rerank", help="re-rank search hits with the embedded MiniLM"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    options: Any = None,
    agent_options: Any = None,
    teacher_options: Any = None,
) -> None:
    """Trajectories into the trajectories table: a teacher solving tasks, or converted gold rationales."""
    from symkd.pipelines.agents import pipeline

    o = build(GenerateOptions, options)
    config = build(AgentConfig, {**agent_options, "temperature": 0.7 if o.samples > 1 else 0.0})
    if o.source == "gold-rationales":
        report = pipeline.convert_gold_rationales(db, data, limit=o.limit, sandbox=config.sandbox, progress=not quiet,
                                                  variants=o.variants, exclude=o.exclude, seed=o.seed)  # fmt: skip
        return _print(report, as_json)
    if o.variants or o.exclude is not None:
        raise UserError("--variants and --exclude go with --source gold-rationales")
    build(TeacherOptions, teacher_options)
    report = pipeline.generate_trajectories(teacher, db, data, config, samples=o.samples, first_thought=o.first_thought,
                                            limit=o.limit, tools=_tools(tools, corpus, rerank),
                                            teacher_options=teacher_options, progress=not quiet)  # fmt: skip
    _print(report, as_json)
    if report["failed"]:
        typer.echo(f"{report['failed']} episode(s) failed at the teacher; rerun to retry them.", err=True)
        raise typer.Exit(1)


def _read(db: Path, sources: Optional[List[str]], verified: str) -> list:
    from symkd.pipelines.agents.tables import read_trajectories
    from symkd.store.db import Store

    if not db.is_file():
        raise UserError(f"{db}: no such database")
    if verified not in ("kept", "rejected", "all"):
        raise UserError(f"--verified must be kept, rejected or all, not {verified!r}")
    with Store(db, create=False) as store:
        return read_trajectories(store, sources=list(sources or []), verified=None if verified == "all" else verified)


def export(
    db: Path = typer.Option(..., "--db", help="run DB holding the trajectories"),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file (- for standard output)"),
    source: Optional[List[str]] = typer.Option(None, "--source", help="teacher | gold-rationales | eval (repeatable; default all)"),
    verified: str = typer.Option("kept", "--verified", help="teacher trajectories: kept | rejected | all (by the verifier critic)"),
    fmt: str = typer.Option("chat", "--format", "-f", help="chat ({messages}) | prompt-completion (one example per assistant turn)"),
) -> None:
    """Trajectories as TRL conversational JSONL (system prompt, question, actions; observations as user turns)."""
    from symkd.jsonio import atomic_write, check_writable, is_stdout
    from symkd.pipelines.agents.export import FORMATS

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: unknown format; known: {', '.join(FORMATS)}")
    check_writable(out)  # one line before any work: a folder, a device, a read-only folder
    rows = _read(db, source, verified)
    examples = 0
    with atomic_write(out) as fh:
        for row in rows:
            for record in FORMATS[fmt](row):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                examples += 1
    extra = f" ({examples} examples)" if examples != len(rows) else ""
    typer.echo(f"{len(rows)} trajectories{extra} -> {out}", err=is_stdout(out))


def export_cot(
    data: Path = typer.Option(..., "--data", help="GSM8K JSONL with worked solutions"),
    out: Path = typer.Option(..., "--out", "-o", help="chat JSONL file to write (- for standard output)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="first N problems only"),
    same_as: Optional[Path] = typer.Option(None, "--same-as", help="only the problems that have trajectories in this DB (of --source)"),
    source: Optional[List[str]] = typer.Option(None, "--source", help="with --same-as: trajectory sources counted (default gold-rationales)"),
) -> None:
    """GSM8K worked solutions as chat JSONL for `symkd train` (the CoT-distilled baseline)."""
    from symkd.jsonio import atomic_write, check_writable, is_stdout
    from symkd.pipelines.agents.export import cot_record
    from symkd.pipelines.agents.gsm8k import read_tasks

    check_writable(out)
    tasks = [t for t in read_tasks(data, limit=limit) if t.solution]
    if same_as is not None:
        solved = {r["task_id"] for r in _read(same_as, list(source or ["gold-rationales"]), "kept")}
        tasks = [t for t in tasks if t.id in solved]
    with atomic_write(out) as fh:
        for t in tasks:
            fh.write(json.dumps(cot_record(t), ensure_ascii=False) + "\n")
    typer.echo(f"{len(tasks)} solutions -> {out}", err=is_stdout(out))


@model_options(TrainConfig, "train_options", exclude=("kd_loss", "teacher_model", "kd_weight"),
               defaults={"epochs": 1.0, "batch_size": 8})  # fmt: skip
def train(
    db: Path = typer.Option(..., "--db", help="run DB holding the trajectories"),
    source: Optional[List[str]] = typer.Option(None, "--source", help="teacher | gold-rationales | gold-variants (repeatable; default the first two)"),
    verified: str = typer.Option("kept", "--verified", help="kept | rejected | all (teacher trajectories)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most N trajectories (first by task order)"),
    negatives: bool = typer.Option(False, "--negatives", help="also failed trajectories (correct = 0) of --source, as negatives for --loss redi, paired as REDI pairs "
                                   "them: per problem at most one distinct failed trajectory per positive"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace what --out holds"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    train_options: Any = None,
) -> None:
    """SFT (or REDI with --loss redi --negatives) on trajectories; the loss covers the model's own turns."""
    from symkd.pipelines.agents.export import training_data
    from symkd.pipelines.agents.self_train import paired_negatives
    from symkd.students.modeling import load_tokenizer
    from symkd.students.train import train as run_train

    if "out" not in train_options:
        raise UserError("--out is required: the folder for the trained student")
    config = build(TrainConfig, train_options)
    sources = list(source or SOURCES)
    rows = _read(db, sources, verified)
    rows = [r for r in rows if r["correct"] or not negatives][:limit]
    failed = paired_negatives(rows, _read(db, sources, "all")) if negatives else []
    data = training_data(rows, load_tokenizer(config.base_model), {"kind": "agent-trajectories", "db": str(db),
                                                                   "sources": sources, "verified": verified},
                         negatives=failed)  # fmt: skip
    summary = run_train(data, config, progress=not quiet, overwrite=overwrite)
    _print({k: summary.get(k) for k in ("examples", "steps", "final_loss", "seconds", "out") if k in summary}, as_json)


@model_options(TrainConfig, "train_options", exclude=("kd_loss", "teacher_model", "kd_weight", "max_steps"),
               defaults={"epochs": 1.0, "batch_size": 8})  # fmt: skip
@model_options(SelfTrainConfig, "self_options")
@model_options(TeacherOptions, "teacher_options", prefix="gen-")  # the sampling student's options: --gen-batch-size ...
def self_train(
    db: Path = typer.Option(..., "--db", help="DB with the seed trajectories; sampled episodes and rounds go here"),
    data: Path = typer.Option(..., "--data", help="training problems (GSM8K JSONL) the student samples on"),
    student: Path = typer.Option(..., "--student", help="round 0 student (e.g. from symkd agent train)"),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="GSM8K JSONL to evaluate each round's student on"),
    limit: Optional[int] = typer.Option(None, "--limit", help="first N training problems only"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    train_options: Any = None,
    self_options: Any = None,
    teacher_options: Any = None,
) -> None:
    """Verified self-training: the student samples, the verifier keeps correct new code, retrain; N rounds."""
    from symkd.pipelines.agents import self_train as st

    if "out" not in train_options:
        raise UserError("--out is required: the folder for the rounds' students")
    if not (student / "training.json").is_file():
        raise UserError(f"{student}: not a finished student folder (no training.json)")
    config = build(SelfTrainConfig, self_options)
    base = build(TrainConfig, train_options).model_dump(exclude={"out"}, exclude_unset=True)
    build(TeacherOptions, teacher_options)
    report = st.run(db, data, student, Path(train_options["out"]), config=config, train_options={"epochs": 1.0, "batch_size": 8, **base},
                    eval_data=eval_data, limit=limit, teacher_options=teacher_options, progress=not quiet)  # fmt: skip
    _print(report, as_json)


class EvalOptions(BaseModel):
    """The options ``agent eval`` and ``agent eval-gsm8k`` share, defined once (flags from model_options);
    the agent's own (``--sag``, ``--max-agent-steps`` ...) are :class:`AgentConfig`'s."""

    model_config = ConfigDict(extra="forbid")

    model: Optional[Path] = Field(None, description="student folder (from symkd agent train / symkd train)")
    teacher: Optional[str] = Field(None, description=f"evaluate a teacher instead of --model: {TEACHER_FORMS}",
                                   json_schema_extra={"cli": "-t"})  # fmt: skip
    data: Path = Field(..., description="GSM8K JSONL")
    db: Optional[Path] = Field(None, description="cache + trajectories DB (default MODEL/agent_eval.db or ./agent_eval.db)")
    votes: int = Field(0, ge=0, description="self-consistency: K sampled episodes per task, majority vote on the answer (0 off)")
    vote_temperature: float = Field(0.7, gt=0, le=2, description="sampling temperature of --votes episodes")
    limit: Optional[int] = Field(None, ge=1, description="first N tasks only")
    context: Optional[str] = Field(None, description="NAME:ARG of a context provider whose text joins the system prompt "
                                   "(e.g. strategies:lib.db; `symkd plugins` lists them)")
    strategies: Optional[Path] = Field(None, description="shorthand for --context strategies:DB")
    tools: Optional[List[str]] = Field(None, description="search, or module:attr of a LangChain BaseTool (repeatable)")
    corpus: Optional[Path] = Field(None, description="DB holding the search tool's corpus")
    rerank: bool = Field(False, description="re-rank search hits with MiniLM")
    few_shot: Optional[bool] = Field(None, description="worked examples in the prompt (default: teachers yes, students no)")
    out: Optional[Path] = Field(None, description="per-item JSONL (trajectories)", json_schema_extra={"cli": "-o"})
    quiet: bool = Field(False, description="no progress bars", json_schema_extra={"cli": "-q"})
    json_out: bool = Field(False, description="print the report as JSON", json_schema_extra={"cli": "--json"})


def _evaluate(mode: str, values: dict[str, Any], agent_options: dict[str, Any], teacher_options: Any) -> None:
    from symkd.pipelines.agents import pipeline

    if "data" not in values:
        raise UserError("--data: a GSM8K JSONL file is required")
    o = build(EvalOptions, values)
    shots = o.few_shot if o.few_shot is not None else o.model is None  # students learned the format
    config = build(AgentConfig, {**agent_options, "few_shot": shots, "temperature": o.vote_temperature if o.votes else 0.0})
    target = _target(o.model, o.teacher)
    build(TeacherOptions, teacher_options)
    db = o.db or (o.model / "agent_eval.db" if o.model is not None and o.model.is_dir() else Path("agent_eval.db"))
    metrics = pipeline.evaluate(target, o.data, db, config, mode=mode, limit=o.limit,
                                tools=_tools(o.tools, o.corpus, o.rerank) if mode == "agent" else [], context=_context(o),
                                votes=o.votes, teacher_options=teacher_options,
                                out=o.out, progress=not o.quiet)  # fmt: skip
    _print(metrics, o.json_out)


def _context(o: Any) -> str | None:
    if o.context and o.strategies:
        raise UserError("--context and --strategies name the same thing: give one")
    return o.context or (f"strategies:{o.strategies}" if o.strategies else None)


#: the agent's options ``agent eval`` and ``agent eval-gsm8k`` show (the others are fixed or follow from --votes, --few-shot)
_EVAL_AGENT = dict(exclude=_only("sag", "max_steps", "max_tokens", "sandbox"), notes={"max_tokens": "CoT: per answer"})


@model_options(AgentConfig, "agent_options", **_EVAL_AGENT)
@model_options(EvalOptions, "eval_options")
@model_options(TeacherOptions, "teacher_options")
def agent_eval(eval_options: Any = None, agent_options: Any = None, teacher_options: Any = None) -> None:
    """Accuracy, average steps, parse- and execution-error rates of an agent (student or teacher)."""
    _evaluate("agent", eval_options, agent_options, teacher_options)


@model_options(AgentConfig, "agent_options", **_EVAL_AGENT)
@model_options(EvalOptions, "eval_options")
@model_options(TeacherOptions, "teacher_options")
def eval_gsm8k(mode: Literal["cot", "agent"] = typer.Option("agent", "--mode", help="cot | agent"),
               eval_options: Any = None, agent_options: Any = None, teacher_options: Any = None) -> None:  # fmt: skip
    """GSM8K accuracy of a student or teacher, answering by chain of thought or as an agent."""
    _evaluate(mode, eval_options, agent_options, teacher_options)


def corpus_index(
    file: Optional[Path] = typer.Argument(None, help="JSONL of {id?, title?, text}"),
    db: Path = typer.Option(..., "--db", help="run DB to hold the index"),
    from_triples: Optional[Path] = typer.Option(None, "--from-triples", help="index a run DB's curated triples instead"),
    name: Optional[str] = typer.Option(None, "--name", help="corpus name (default: the file's stem)"),
) -> None:
    """Index documents for BM25 search (FTS5); indexing the same documents again adds nothing."""
    from symkd.pipelines.agents.corpus import index_docs, read_docs, triple_docs
    from symkd.store.db import Store

    if (file is None) == (from_triples is None):
        raise UserError("give a JSONL file or --from-triples RUN.db (one of them)")
    source = file or from_triples
    docs = read_docs(file) if file is not None else triple_docs(from_triples)
    with Store(db) as store:
        counts = index_docs(store, docs, corpus=name or source.stem, origin=str(source))
    typer.echo(f"corpus {name or source.stem}: {counts['added']} new of {counts['given']} documents -> {db}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """The ``agent`` group (``index-corpus`` and ``eval-gsm8k`` included)."""
    agent_app.command("generate")(generate)
    agent_app.command("export")(export)
    agent_app.command("export-cot")(export_cot)
    agent_app.command("train")(train)
    agent_app.command("self-train")(self_train)
    agent_app.command("eval")(agent_eval)
    agent_app.command("eval-gsm8k")(eval_gsm8k)
    agent_app.command("index-corpus")(corpus_index)
    app.add_typer(agent_app, name="agent")
