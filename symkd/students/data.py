"""Training examples for students: where they come from, how they are formatted and masked.

An :class:`Example` is a ``prompt`` and a ``completion``; the loss covers the completion only.
Where examples come from is a *data format*, looked up by name in :data:`DATA_FORMATS` (the
``symkd.data`` entry-point group): each names the file suffixes it reads and a loader, or the JSONL
row keys it turns into an example. The core reads JSONL (``jsonl``); pipelines add their own (the
commonsense pipeline: a run DB's curated triples, ATOMIC ``.tsv`` files and ``{head, relation,
tail}`` rows, all as COMET-style prompts). A JSONL file's objects are ``{prompt, completion}``, a
chat ``{messages: [...]}`` (the loss covers the last assistant message; rendered with the
student's chat template when it is tokenized), TRL's conversational prompt-completion
``{prompt: [messages], completion: [assistant message(s)]}`` (``symkd export --format
prompt-completion``, ``symkd agent export --format prompt-completion``): the loss covers the
completion, the prompt rendered with the chat template and its generation prompt, so such a
row and the chat row ``{messages: prompt + completion}`` give the same tokens and mask (TRL's
plain-string ``{prompt, completion}`` is the ``{prompt, completion}`` form above), or the keys a
registered row format reads. Any row may say ``"negative": true``: a failed trajectory, which the
REDI objective (``TrainConfig(loss="redi")``) learns away from and SFT leaves out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from symkd.errors import UserError
from symkd.plugins import Registry

IGNORE_INDEX = -100


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


@dataclass(frozen=True)
class DataFormat:
    """A source of training examples, registered by name in :data:`DATA_FORMATS`."""

    name: str
    #: how an error message names it ("a run DB (.db)")
    description: str
    #: file suffixes it reads (lower case, with the dot)
    suffixes: tuple[str, ...] = ()
    #: ``(path, **options) -> TrainingData``
    load: Callable[..., TrainingData] | None = None
    #: True when ``load`` takes the selection options (critics, min_score, rounds, relations, limit, seed)
    options: bool = False
    #: JSONL rows holding all these keys become examples through ``row(obj, where)``
    keys: tuple[str, ...] = ()
    row: Callable[[dict[str, Any], str], Example] | None = None


def _load_jsonl(path: str | Path, **_: Any) -> TrainingData:
    return from_jsonl(path)


JSONL = DataFormat("jsonl", "a .jsonl file", (".jsonl", ".json"), _load_jsonl)
#: data formats by name: the core's ``jsonl``, then the ``symkd.data`` entry points (pipelines, users)
DATA_FORMATS = Registry("symkd.data", "data format", {"jsonl": "symkd.students.data:JSONL"})


def data_formats() -> list[DataFormat]:
    """Every registered :class:`DataFormat` (imports the modules that define them)."""
    found = [DATA_FORMATS.load(name) for name in DATA_FORMATS.names()]
    for fmt in found:
        if not isinstance(fmt, DataFormat):
            raise UserError(f"data format {fmt!r}: not a symkd.students.data.DataFormat")
    return found


def from_jsonl(path: str | Path) -> TrainingData:
    from symkd.jsonio import read_jsonl

    examples, rows = [], [f for f in data_formats() if f.keys and f.row is not None]
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        examples.append(_row_example(obj, where, rows))
        if "negative" in obj:
            if not isinstance(obj["negative"], bool):
                raise UserError(f"{where}: 'negative' must be true or false")
            examples[-1] = replace(examples[-1], negative=obj["negative"])
    negatives = sum(e.negative for e in examples)
    chat = bool(examples) and all(e.messages for e in examples)
    return TrainingData(examples, {"kind": "chat" if chat else "jsonl", "path": str(path), "rows": len(examples),
                                   **({"negatives": negatives} if negatives else {})})  # fmt: skip


def _row_example(obj: dict[str, Any], where: str, rows: Sequence[DataFormat] = ()) -> Example:
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
    for fmt in rows:
        if set(fmt.keys) <= obj.keys():
            return fmt.row(obj, where)  # type: ignore[misc]
    other = "".join(f" or {'+'.join(repr(k) for k in fmt.keys)}" for fmt in rows)
    raise UserError(f"{where}: expected 'messages', 'prompt'+'completion'{other}")


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
    """A file of any registered data format (by its suffix: ``.jsonl``, and e.g. a run DB or an
    ATOMIC ``.tsv`` from the commonsense pipeline) -> examples; ``db_options`` go to a format
    that takes selection options."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    formats = data_formats()
    fmt = next((f for f in formats if f.load is not None and path.suffix.lower() in f.suffixes), None)
    selective = [f.description for f in formats if f.options]
    if fmt is not None and fmt.options:
        data = fmt.load(path, **db_options)  # type: ignore[misc]
    elif db_options and any(v not in (None, (), []) for v in db_options.values()):
        raise UserError(f"{path}: critic/round/relation filters apply to {' or '.join(selective) or 'no format'} only")
    elif fmt is not None:
        data = fmt.load(path)  # type: ignore[misc]
    else:
        named = [f.description for f in formats if f.load is not None]
        raise UserError(f"{path}: expected {', '.join(named[:-1]) + ' or ' if len(named) > 1 else ''}{named[-1]}")
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
