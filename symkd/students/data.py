"""Training examples for students: where they come from, how they are formatted and masked.

An :class:`Example` is a ``prompt`` and a ``completion``; the loss covers the completion only.
Commonsense triples use the COMET-style format of :func:`comet_prompt`::

    "PersonX goes jogging as a result, PersonX feels [GEN]"  ->  " tired<eos>"

(the relation's natural-language phrase from :mod:`symkd.knowledge.relations`, so the
format reads as a sentence for a pretrained LM and needs no new tokens). Sources:

* a run DB: curated triples, optionally only those every named critic kept (or scored at
  least ``min_score``), of some rounds or relations, capped at ``limit`` (seeded sample);
* an ATOMIC TSV (``head @@ relation<TAB>tail1| tail2``): one example per tail;
* a JSONL file whose objects are ``{head, relation, tail}``, ``{prompt, completion}`` or a chat
  ``{messages: [...]}`` (the loss covers the last assistant message; rendered with the
  student's chat template when it is tokenized), or TRL's conversational prompt-completion
  ``{prompt: [messages], completion: [assistant message(s)]}`` (``symkd export --format
  prompt-completion``, ``symkd agent export --format prompt-completion``): the loss covers the
  completion, the prompt rendered with the chat template and its generation prompt, so such a
  row and the chat row ``{messages: prompt + completion}`` give the same tokens and mask (TRL's
  plain-string ``{prompt, completion}`` is the ``{prompt, completion}`` form above). Any row may
  say ``"negative": true``: a failed trajectory, which the REDI objective
  (``TrainConfig(loss="redi")``) learns away from and SFT leaves out.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from symkd.knowledge.triples import normalize
from symkd.knowledge.relations import RELATIONS
from symkd.errors import UserError

GEN = "[GEN]"
IGNORE_INDEX = -100


def comet_prompt(head: str, relation: str) -> str:
    """The prompt a student sees for (head, relation); the tail follows after one space."""
    if relation not in RELATIONS:
        raise UserError(f"unknown relation {relation!r}")
    return f"{head.strip()} {RELATIONS[relation].phrase} {GEN}"


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str
    group: str = ""  # examples of one group stay on one side of the held-out split (the head)
    messages: tuple[dict[str, str], ...] | None = None  # chat examples: rendered at tokenization
    #: pre-rendered text pieces and whether each is trained on (multi-turn masks, e.g. agent
    #: trajectories whose observations are masked); when set, tokenize() uses only these
    segments: tuple[tuple[str, bool], ...] | None = None
    #: a failed trajectory: the REDI objective lowers its likelihood; SFT leaves it out
    negative: bool = False
    #: chat examples: how many of the last messages are trained on (a TRL prompt-completion row's
    #: completion; 1: the last assistant message)
    completion_turns: int = 1


@dataclass
class TrainingData:
    """Examples plus a JSON-ready description of where they came from (for the model card)."""

    examples: list[Example]
    source: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)


def triple_example(head: str, relation: str, tail: str) -> Example:
    return Example(comet_prompt(head, relation), " " + tail.strip(), group=normalize(head))


def from_triples(rows: Sequence[Any], source: dict[str, Any] | None = None) -> TrainingData:
    """Examples from ``(head, relation, tail)`` tuples or mappings with those keys."""
    examples = []
    for row in rows:
        head, relation, tail = (row["head"], row["relation"], row["tail"]) if isinstance(row, dict) else row
        examples.append(triple_example(head, relation, tail))
    return TrainingData(examples, source or {"kind": "triples", "rows": len(examples)})


def from_db(
    db: str | Path,
    *,
    critics: Sequence[str] = (),
    min_score: float | None = None,
    rounds: Sequence[int] = (),
    relations: Sequence[str] = (),
    limit: int | None = None,
    seed: int = 0,
) -> TrainingData:
    """Curated triples of a run DB (see :func:`symkd.knowledge.triples.curated_triples`)."""
    from symkd.knowledge.triples import curated_triples
    from symkd.store.db import Store

    path = Path(db)
    if not path.is_file():
        raise UserError(f"{path}: no such database")
    with Store(path, create=False, readonly=True) as store:
        if not store.scalar("select count(*) from sqlite_master where name = 'triples'"):
            raise UserError(f"{path}: no triples table (run symkd distill commonsense first)")
        known = {r["critic"] for r in store.query("select distinct critic from critic_scores")}
        missing = [c for c in critics if c not in known]
        if missing:
            have = ", ".join(sorted(known)) or "none"
            raise UserError(f"{path}: critic {missing[0]!r} has scored nothing here (critics in this DB: {have})")
        rows = curated_triples(store, critics=critics, min_score=min_score, rounds=rounds, relations=relations)
    available = len(rows)
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    data = from_triples(rows)
    data.source = {"kind": "db", "path": str(path), "critics": list(critics), "min_score": min_score,
                   "rounds": list(rounds), "relations": list(relations), "available": available,
                   "limit": limit, "sample_seed": seed if limit is not None else None, "rows": len(rows)}  # fmt: skip
    return data


def from_tsv(path: str | Path) -> TrainingData:
    from symkd.knowledge.atomic import read_atomic_tsv

    lines = read_atomic_tsv(path)
    examples = [triple_example(ln.head, ln.relation, tail) for ln in lines for tail in ln.tails]
    return TrainingData(examples, {"kind": "tsv", "path": str(path), "lines": len(lines), "rows": len(examples)})


def from_jsonl(path: str | Path) -> TrainingData:
    from symkd.jsonio import read_jsonl

    examples = []
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        examples.append(_row_example(obj, where))
        if "negative" in obj:
            if not isinstance(obj["negative"], bool):
                raise UserError(f"{where}: 'negative' must be true or false")
            examples[-1] = replace(examples[-1], negative=obj["negative"])
    negatives = sum(e.negative for e in examples)
    chat = bool(examples) and all(e.messages for e in examples)
    return TrainingData(examples, {"kind": "chat" if chat else "jsonl", "path": str(path), "rows": len(examples),
                                   **({"negatives": negatives} if negatives else {})})  # fmt: skip


def _row_example(obj: dict[str, Any], where: str) -> Example:
    """One JSONL row -> its example; a bad row is one UserError naming ``where`` and the field."""
    if "messages" in obj:
        return _chat_example(obj["messages"], where)
    if "prompt" in obj or "completion" in obj:
        prompt, completion = obj.get("prompt"), obj.get("completion")
        if isinstance(prompt, list) or isinstance(completion, list):
            return _conversational_example(prompt, completion, where)
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion.strip():
            raise UserError(f"{where}: 'prompt' and 'completion' must be strings, the completion non-empty "
                            "(or both lists of messages: TRL's conversational prompt-completion)")  # fmt: skip
        return Example(prompt, completion, group=prompt)
    if {"head", "relation", "tail"} <= obj.keys():
        fields = [obj[k] for k in ("head", "relation", "tail")]
        if not all(isinstance(v, str) and v.strip() for v in fields):
            raise UserError(f"{where}: 'head', 'relation' and 'tail' must be non-empty strings")
        try:
            return triple_example(*fields)
        except UserError as exc:
            raise UserError(f"{where}: field 'relation': {exc}") from None
    raise UserError(f"{where}: expected 'messages', 'prompt'+'completion' or 'head'+'relation'+'tail'")


def _check_messages(messages: Any, field: str, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: '{field}' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise UserError(f"{where}: {field}[{i}] needs string 'role' and 'content'")


def _chat_example(messages: Any, where: str) -> Example:
    _check_messages(messages, "messages", where)
    if messages[-1]["role"] != "assistant":
        raise UserError(f"{where}: the last message must be the assistant's (the part the student learns)")
    first_user = next((m["content"] for m in messages if m["role"] == "user"), "")
    return Example("", messages[-1]["content"], group=first_user,
                   messages=tuple({"role": m["role"], "content": m["content"]} for m in messages))  # fmt: skip


def _conversational_example(prompt: Any, completion: Any, where: str) -> Example:
    """TRL's conversational prompt-completion row: the loss covers ``completion`` (its first and
    last messages the assistant's), the same example as the chat row ``prompt + completion`` when
    the completion is one message."""
    _check_messages(prompt, "prompt", where)
    _check_messages(completion, "completion", where)
    for i in sorted({0, len(completion) - 1}):
        if completion[i]["role"] != "assistant":
            raise UserError(f"{where}: completion[{i}] must be the assistant's (the part the student learns), "
                            f"not {completion[i]['role']!r}")  # fmt: skip
    example = _chat_example(prompt + completion, where)
    return replace(example, completion_turns=len(completion))


def load_data(source: str | Path, **db_options: Any) -> TrainingData:
    """A run DB (``.db``/``.sqlite``), an ATOMIC ``.tsv`` or a ``.jsonl`` file -> examples."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".db", ".sqlite", ".sqlite3"):
        data = from_db(path, **db_options)
    elif db_options and any(v not in (None, (), []) for v in db_options.values()):
        raise UserError(f"{path}: critic/round/relation filters apply to a run DB only")
    elif suffix == ".tsv":
        data = from_tsv(path)
    elif suffix in (".jsonl", ".json"):
        data = from_jsonl(path)
    else:
        raise UserError(f"{path}: expected a run DB (.db), an ATOMIC .tsv or a .jsonl file")
    if not data.examples:
        raise UserError(f"{path}: no training examples (the corpus is empty after filtering)")
    return data


def split_held_out(data: TrainingData, fraction: float, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(train, held-out) split by group (the head), so no head is on both sides."""
    if not 0 <= fraction < 1:
        raise UserError(f"eval fraction must be in [0, 1), not {fraction}")
    if fraction == 0 or len(data.examples) < 2:
        return list(data.examples), []

    def bucket(group: str) -> float:
        digest = hashlib.sha1(f"{seed}:{group}".encode("utf-8")).hexdigest()
        return int(digest[:8], 16) / 0xFFFFFFFF

    train = [e for e in data.examples if bucket(e.group) >= fraction]
    held = [e for e in data.examples if bucket(e.group) < fraction]
    if not train:  # a single group: fall back to a split by example
        cut = max(1, int(len(data.examples) * fraction))
        return list(data.examples[cut:]), list(data.examples[:cut])
    return train, held


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    negative: bool = False


def tokenize(example: Example, tokenizer: Any, max_length: int | None = None) -> Tokenized | None:
    """Token ids with labels on the completion (+ EOS) only; None when it is longer than
    ``max_length`` (None: no limit) or has nothing to learn."""
    if example.segments is not None:
        return _tokenize_segments(example.segments, tokenizer, max_length, example.negative)
    if example.messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("chat examples need a base model with a chat template")
        msgs = list(example.messages)
        cut = len(msgs) - example.completion_turns
        prompt = tokenizer.apply_chat_template(msgs[:cut], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(msgs, tokenize=False)
        if not full.startswith(prompt):
            raise UserError("the chat template does not render the conversation as prompt + answer")
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    else:
        prompt_ids = tokenizer(example.prompt)["input_ids"] if example.prompt else []
        completion_ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            completion_ids = completion_ids + [tokenizer.eos_token_id]
    ids = prompt_ids + completion_ids
    if (max_length is not None and len(ids) > max_length) or not completion_ids:
        return None
    return Tokenized(ids, [IGNORE_INDEX] * len(prompt_ids) + completion_ids, example.negative)


def _tokenize_segments(segments: Sequence[tuple[str, bool]], tokenizer: Any, max_length: int | None,
                       negative: bool = False) -> Tokenized | None:  # fmt: skip
    """Each piece tokenized on its own; labels on the trained pieces only."""
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in segments:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    if (max_length is not None and len(ids) > max_length) or all(x == IGNORE_INDEX for x in labels):
        return None
    return Tokenized(ids, labels, negative)
