"""Program variants: verified demonstrations without a teacher.

A gold-rationale trajectory (:mod:`.gold`) is a small program whose literals come from the
question. Where the question's numbers map onto its literals they are changed (same kind and
roundness; 0, 1, years, times, fractions and numbers written as words stay), the code is re-run
in the sandbox for the new answer, and the question and the thoughts get the new numbers. A
variant is kept only when every computed value keeps its sign and stays an integer where it was
one, and the answer is positive. Rows: source ``gold-variants``, provenance in ``config``.

A problem is skipped (the reason counted) when a code literal equals a value computed before it
(``ambiguous_role``), when a literal is neither a question number nor a constant the question's
words imply (``unmapped_literal``: "half", "dozen", "hours", "%", ...), when nothing is left to
vary, or when no draw passes. A question number a word also implies ("2 friends ... twice a
week": two roles in the code) is kept as it is. Parents and variants whose normalized question
is in the exclude set (a test set) are dropped. Deterministic given the seed.
"""

from __future__ import annotations

import ast
import io
import math
import random
import re
import tokenize
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Sequence

from symkd.errors import UserError
from symkd.pipelines.agents import gold, tables
from symkd.pipelines.agents.gsm8k import Task, answers_match

SOURCE = "gold-variants"
ATTEMPTS_PER_VARIANT = 12
_NUM = re.compile(r"(?<![\w.])(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?!\w|\.\d|,\d)")
_PERCENT_AFTER = re.compile(r"\s*(?:%|percent\b)", re.I)
_WORDS = re.compile(r"[a-z]+(?:-[a-z]+)?|%")
_FINAL = re.compile(r"^\s*final_answer\((\w+)\)\s*$")
_ASSIGN = re.compile(r"^\s*(\w+)\s*=")
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_ONES = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()  # fmt: skip
_WORD_VALUE = {**{w: i + 1 for i, w in enumerate(_ONES)}, **_TENS}
_NUMBER_WORD = re.compile(r"\b(?:" + "|".join(_WORD_VALUE) + r")\b", re.I)
_EXACT: dict[str, tuple] = {
    **{w: (v,) for w, v in _WORD_VALUE.items()},
    "hundred": (100,), "thousand": (1000,), "million": (1000000,), "half": (2, 0.5, 50), "halves": (2,),
    "twice": (2,), "double": (2,), "doubled": (2,), "doubles": (2,), "pair": (2,), "pairs": (2,), "both": (2,),
    "twins": (2,), "couple": (2,), "triple": (3,), "tripled": (3,), "thrice": (3,), "triplets": (3,),
    "third": (3,), "thirds": (3,), "quadruple": (4,), "fourth": (4,), "fifth": (5,), "sixth": (6,),
    "seventh": (7,), "eighth": (8,), "ninth": (9,), "tenth": (10,), "dozen": (12,), "dozens": (12,),
    "score": (20,), "%": (100, 0.01), "percent": (100, 0.01), "percentage": (100, 0.01), "ton": (2000,), "tons": (2000,),
    "daily": (24, 7, 30, 365), "weekend": (2,), "weekends": (2,), "biweekly": (2,),
}  # fmt: skip
_PREFIX: dict[str, tuple] = {
    "hour": (60, 24), "minute": (60,), "second": (60,), "day": (24, 7, 30, 31, 365), "week": (7, 52),
    "month": (12, 30, 4), "year": (12, 52, 365), "annual": (12, 52, 365), "decade": (10,), "centur": (100,),
    "dollar": (100,), "cent": (100,), "penn": (100,), "nickel": (5,), "dime": (10,), "quarter": (4, 0.25, 25),
    "foot": (12,), "feet": (12, 3), "inch": (12,), "yard": (3, 36), "pound": (16,), "ounce": (16,),
    "gallon": (4, 128), "quart": (4, 2), "pint": (2,), "mile": (5280,), "meter": (100, 1000),
    "metre": (100, 1000), "kilo": (1000,), "liter": (1000,), "litre": (1000,), "gram": (1000,),
}  # fmt: skip


@dataclass(frozen=True)
class Number:
    """A number written in the question, where it stands and whether it may change."""

    start: int
    end: int
    text: str
    value: Decimal
    percent: bool
    fixed: bool


@dataclass
class Plan:
    """What may change in a problem: question values -> (percent, decimal places); values to avoid."""

    changeable: dict[Decimal, tuple[bool, int]]
    avoid: set[Decimal] = field(default_factory=set)

    def draw(self, rng: random.Random, coarse: bool = False) -> dict[Decimal, Decimal] | None:
        """New values; ``coarse`` keeps each value's divisors up to 60 (48 -> a multiple of 12)."""
        mapping: dict[Decimal, Decimal] = {}
        for value in sorted(self.changeable):
            percent, places = self.changeable[value]
            new = _draw(value, percent, places, rng, self.avoid | set(mapping.values()), coarse)
            if new is None:
                return None
            mapping[value] = new
        return mapping

    def literal_map(self, mapping: dict[Decimal, Decimal]) -> dict[Decimal, Decimal]:
        """Code literal -> new literal: the numbers themselves, and a percentage's fraction (80 % -> 0.8)."""
        fractions = {v / 100: new / 100 for v, new in mapping.items() if self.changeable[v][0]}
        return {**fractions, **mapping}


def normalize_question(text: str) -> str:
    """Lower case, digits' commas dropped, every run of other characters one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^0-9a-z]+", " ", re.sub(r"(?<=\d),(?=\d)", "", text)).split())


def read_exclude(path: str | Path) -> frozenset[str]:
    """Normalized questions of a JSONL file of ``{"question", ...}`` (e.g. GSM8K test)."""
    from symkd.jsonio import read_jsonl

    out = set()
    for lineno, obj in read_jsonl(path):
        if not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise UserError(f"{path}:{lineno}: field 'question' is missing or empty (--exclude needs questions)")
        out.add(normalize_question(obj["question"]))
    return frozenset(out)


def question_numbers(question: str) -> list[Number]:
    """Numbers written with digits; fixed: 0, 1, years, times, fractions and ratios, 100 %."""
    found = []
    for m in _NUM.finditer(question):
        text, value = m.group(0), Decimal(m.group(0).replace(",", ""))
        percent = bool(_PERCENT_AFTER.match(question, m.end()))
        around = question[max(m.start() - 1, 0) : m.start()] + question[m.end() : m.end() + 1]
        year = len(text) == 4 and 1800 <= value <= 2100
        fixed = value in (0, 1) or year or bool(set(around) & set("/:")) or (percent and value == 100)
        found.append(Number(m.start(), m.end(), text, value, percent, fixed))
    return found


def implied_values(question: str) -> set[Decimal]:
    """Numbers the question's words imply: "twice" 2, "dozen" 12, "hours" 60 and 24, "%" 100, ..."""
    values: set[Any] = set()
    for word in _WORDS.findall(question.lower()):
        parts = word.split("-")
        if len(parts) == 2 and parts[0] in _TENS and parts[1] in _ONES[:9]:
            values.add(_TENS[parts[0]] + _ONES.index(parts[1]) + 1)
        for part in parts:
            values.update(_EXACT.get(part, ()))
            values.update(v for stem, vs in _PREFIX.items() if part.startswith(stem) for v in vs)
    return {Decimal(repr(v)) for v in values}


def code_literals(code: str) -> list[tuple[int, int, int, Decimal]]:
    """(line index, start offset, end offset, value) of every number literal in the code."""
    offsets = [0]
    for line in code.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.NUMBER and not tok.string.lower().endswith("j"):
            (row, col), (erow, ecol) = tok.start, tok.end
            out.append((row - 1, offsets[row - 1] + col, offsets[erow - 1] + ecol, Decimal(tok.string.replace("_", ""))))
    return out


def make_plan(question: str, steps: Sequence[gold.GoldStep], values: dict[str, Decimal | None]) -> Plan | str:
    """What may change, or the reason the problem admits no variant (``values``: the program's variables)."""
    numbers = question_numbers(question)
    implied = implied_values(question)
    qvals = {n.value for n in numbers}
    fractions = {n.value / 100: n.value for n in numbers if n.percent}
    fixed = {n.value for n in numbers if n.fixed} | (qvals & implied)
    code = "\n".join(s.code for s in steps[:-1])
    by_line: dict[int, list[Decimal]] = {}
    for index, _, _, value in code_literals(code):
        by_line.setdefault(index, []).append(value)
    used: set[Decimal] = set()
    computed: set[Decimal] = set()  # values of the variables assigned on earlier lines
    for index, line in enumerate(code.splitlines()):
        for value in by_line.get(index, ()):
            if value in computed and value not in (0, 1):
                return "ambiguous_role"
            if value in qvals or value in fractions:
                used.add(value if value in qvals else fractions[value])
            elif value not in implied and value not in (0, 1):
                return "unmapped_literal"
        m = _ASSIGN.match(line)
        if m and values.get(m.group(1)) is not None:
            computed.add(values[m.group(1)])  # type: ignore[arg-type]
    changeable = {v: (any(n.percent for n in numbers if n.value == v), max(_places(n.text) for n in numbers if n.value == v))
                  for v in sorted(used - fixed)}  # fmt: skip
    if not changeable:
        return "nothing_to_vary"
    literals = {value for vs in by_line.values() for value in vs}
    return Plan(changeable, qvals | implied | literals | {Decimal(0), Decimal(1)})


def _places(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _draw(value: Decimal, percent: bool, places: int, rng: random.Random, avoid: set[Decimal],
          coarse: bool) -> Decimal | None:  # fmt: skip
    """A value of the same kind and roundness, about half to one and a half times the old one."""
    unit = Decimal(1).scaleb(-places)
    n = int(value / unit)
    step = next((s for s in (1000, 500, 100, 50, 25, 10, 5) if n % s == 0 and n // s >= 3), 1)
    step = max(step, math.gcd(n, 60)) if coarse else step
    low = max(1 if places else 2, -(-n // 2))
    high = max(n * 3 // 2, n + 4 * step)
    if percent and value < 100:
        high = min(high, int(Decimal(99) / unit))
    first = -(-low // step) * step
    choices = [c for c in range(first, high + 1, step) if c != n and c * unit not in avoid]
    return rng.choice(choices) * unit if choices else None


def rewrite_code(code: str, literal_map: dict[Decimal, Decimal]) -> str:
    for _, start, end, value in reversed(code_literals(code)):
        if value in literal_map:
            code = code[:start] + f"{literal_map[value]:f}" + code[end:]
    return code


def rewrite_question(question: str, mapping: dict[Decimal, Decimal]) -> str:
    for n in reversed(question_numbers(question)):
        if not n.fixed and n.value in mapping:
            question = question[: n.start] + _format(mapping[n.value], n.text) + question[n.end :]
    return question


def rewrite_thought(text: str, literal_map: dict[Decimal, Decimal], computed: dict[Decimal, Decimal | None],
                    keep: set[Decimal]) -> str | None:  # fmt: skip
    """Question numbers -> their new values; numbers kept as they were (constants, unchanged question
    numbers) stay; other computed values -> the new computed values (None when two that were
    equal no longer are)."""
    out, last = [], 0
    for m in _NUM.finditer(text):
        value = Decimal(m.group(0).replace(",", ""))
        new = literal_map.get(value, value if value in keep else computed.get(value, value))
        if new is None:
            return None
        out += [text[last : m.start()], _format(new, m.group(0)) if new != value else m.group(0)]
        last = m.end()
    values = {w: Decimal(_WORD_VALUE[w.lower()]) for w in _NUMBER_WORD.findall(text)}  # "five minutes", 5 changed
    words = {w: f"{literal_map[v]:f}" for w, v in values.items() if v in literal_map}
    return _NUMBER_WORD.sub(lambda m: words.get(m.group(0), m.group(0)), "".join(out) + text[last:])


def _format(value: Decimal, like: str) -> str:
    """``value`` written like ``like``: its decimal places (more when needed, at most 4), its commas."""
    places = max(_places(like), min(_exp(value), 4))
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{q:,f}" if "," in like else f"{q:f}"


def run_program(sandbox: Any, steps: Sequence[gold.GoldStep]) -> dict[str, Decimal | None] | None:
    """The values of the variables the steps assign (before the final step); None on an error."""
    names = [m.group(1) for s in steps[:-1] for line in s.code.splitlines() if (m := _ASSIGN.match(line))]
    probe = "print(repr({" + ", ".join(f"{n!r}: {n}" for n in dict.fromkeys(names)) + "}))"
    result = sandbox.run("\n".join([*(s.code for s in steps[:-1]), probe]))
    try:
        raw = ast.literal_eval(result.stdout.strip().splitlines()[-1]) if not (result.error or result.timed_out) else None
    except (ValueError, SyntaxError, IndexError):
        raw = None
    return {name: _decimal(v) for name, v in raw.items()} if isinstance(raw, dict) else None


def _decimal(v: Any) -> Decimal | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        return None
    return Decimal(v) if isinstance(v, int) else Decimal(repr(v))


def _integral(d: Decimal) -> bool:
    return d == d.to_integral_value()


def check(orig: dict[str, Decimal | None], new: dict[str, Decimal | None], final: str) -> str | None:
    """Why the new values make no sensible problem, or None: signs kept, integers stay integers,
    a positive answer with at most 2 decimals (or the original's) where it was not an integer."""
    for name, o in [(n, o) for n, o in orig.items() if o is not None]:
        n = new.get(name)
        if n is None or (o > 0 and n <= 0) or (o >= 0 and n < 0):
            return "not_positive"
        if _integral(o) and not _integral(n):
            return "not_integer"
    a, b = orig[final], new[final]
    if b is None or b <= 0:
        return "not_positive"
    return "not_integer" if a is not None and not _integral(a) and _exp(b) > max(2, _exp(a)) else None


def _exp(d: Decimal) -> int:  # the decimal places d needs: 2.50 -> 1
    return max(-int(d.normalize().as_tuple().exponent), 0)


def _answer_text(d: Decimal) -> str:
    return str(int(d)) if _integral(d) else f"{d.normalize():f}"


def _final_name(steps: Sequence[gold.GoldStep]) -> str | None:
    m = _FINAL.match(steps[-1].code) if steps else None
    return m.group(1) if m else None


def _attempt(task: Task, steps: Sequence[gold.GoldStep], plan: Plan, mapping: dict[Decimal, Decimal],
             orig: dict[str, Decimal | None], final: str, box: Any) -> tuple[str, list[gold.GoldStep], str] | str:  # fmt: skip
    """(question, steps, answer) of one variant, or why it fails."""
    literal_map = plan.literal_map(mapping)
    steps = [gold.GoldStep(s.thought, rewrite_code(s.code, literal_map)) for s in steps]
    new = run_program(box, steps)
    if new is None:
        return "sandbox_error"
    bad = check(orig, new, final)
    if bad:
        return bad
    computed: dict[Decimal, Decimal | None] = {}
    for name, o in orig.items():
        if o is not None:
            computed[o] = new[name] if computed.get(o, new[name]) == new[name] else None
    keep = plan.avoid - set(literal_map)
    thoughts = [rewrite_thought(s.thought, literal_map, computed, keep) for s in steps[:-1]]
    answer = {orig[final]: new[final]}  # the last thought: "The answer is 72."
    thoughts.append(rewrite_thought(steps[-1].thought, {k: v for k, v in literal_map.items() if k not in answer}, answer, set()))
    if any(t is None for t in thoughts):
        return "ambiguous_thought"
    out = [gold.GoldStep(t, s.code) for t, s in zip(thoughts, steps)]  # type: ignore[arg-type]
    return rewrite_question(task.question, mapping), out, _answer_text(new[final])  # type: ignore[arg-type]


def make_variants(tasks: Sequence[Task], base_for: Any, *, template: Any, k: int, seed: int = 0,
                  exclude: frozenset[str] = frozenset(), sandbox_mode: str = "bwrap",
                  progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Up to ``k`` verified variants per task (rows of source ``gold-variants``) and the counts:
    problems, admitting (at least one variant), variants, variants_excluded, skipped {reason: n}."""
    from symkd.progress import bar
    from symkd.sandbox import Sandbox, SandboxLimits

    if k < 1:
        raise UserError(f"--variants must be at least 1, not {k}")
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    admitting = excluded = 0
    with Sandbox(limits=SandboxLimits(step_timeout=5.0), mode=sandbox_mode) as root:
        for task in bar(tasks, desc="program variants", unit="task", enabled=progress):
            made, reason, dropped = _problem(task, root, k=k, seed=seed, exclude=exclude, base_for=base_for,
                                             template=template)  # fmt: skip
            rows += made
            admitting += bool(made)
            excluded += dropped
            if reason:
                skipped[reason] += 1
    return rows, {"problems": len(tasks), "admitting": admitting, "share": round(admitting / max(len(tasks), 1), 4),
                  "variants": len(rows), "variants_excluded": excluded, "skipped": dict(skipped.most_common())}  # fmt: skip


def _problem(task: Task, root: Any, *, k: int, seed: int, exclude: frozenset[str], base_for: Any,
             template: Any) -> tuple[list[dict[str, Any]], str | None, int]:  # fmt: skip
    """(rows, why none was made or None, variants dropped as excluded) of one task."""
    if normalize_question(task.question) in exclude:
        return [], "parent_excluded", 0
    steps = gold.gold_steps(task)
    if steps is None:
        return [], "no_annotation", 0
    box = root.fork()
    try:
        orig, final = run_program(box, steps), _final_name(steps)
        if orig is None or final is None or orig.get(final) is None or not answers_match(str(orig[final]), task.answer):
            return [], "parent_unverified", 0
        if list(orig)[-1] != final:  # the answer is an earlier value that happens to equal the reference
            return [], "answer_not_last", 0
        plan = make_plan(task.question, steps, orig)
        if isinstance(plan, str):
            return [], plan, 0
        rows, fails = _draws(task, steps, plan, orig, final, box, root, k=k, seed=seed, exclude=exclude,
                             base_for=base_for, template=template)  # fmt: skip
    finally:
        box.close()
    return rows, None if rows else (fails.most_common(1)[0][0] if fails else "nothing_to_vary"), fails["excluded"]


def _draws(task: Task, steps: list[gold.GoldStep], plan: Plan, orig: dict[str, Decimal | None], final: str, box: Any,
           root: Any, *, k: int, seed: int, exclude: frozenset[str], base_for: Any,
           template: Any) -> tuple[list[dict[str, Any]], Counter[str]]:  # fmt: skip
    """Draws new numbers (fine steps first, then coarse) until ``k`` variants pass or the budget ends."""
    rng = random.Random(f"{seed}:{task.id}")
    seen, fails, rows = {normalize_question(task.question)}, Counter[str](), []
    budget = ATTEMPTS_PER_VARIANT * k
    for attempt in range(budget):
        mapping = plan.draw(rng, coarse=attempt >= budget // 2) if len(rows) < k else None
        if mapping is None:
            break
        outcome = _attempt(task, steps, plan, mapping, orig, final, box)
        norm = "" if isinstance(outcome, str) else normalize_question(outcome[0])
        reason = outcome if isinstance(outcome, str) else "excluded" if norm in exclude else "duplicate" if norm in seen else None
        row = None if reason else _record(task, len(rows) + 1, outcome, mapping, root, base_for, template, seed)  # type: ignore[arg-type]
        if row is None:
            fails[reason or "answer_mismatch"] += 1
            continue
        seen.add(norm)
        rows.append(row)
    return rows, fails


def _record(task: Task, index: int, variant: tuple[str, list[gold.GoldStep], str], mapping: dict[Decimal, Decimal],
            root: Any, base_for: Any, template: Any, seed: int) -> dict[str, Any] | None:  # fmt: skip
    """The variant's trajectory, run again from a fresh worker step by step; None if it misses its answer."""
    question, steps, answer = variant
    vtask = Task(f"{task.id}~v{index}", question, "", answer)
    child = root.fork()
    try:
        _, row = gold._run(vtask, steps, child, base_for(vtask), template)
    finally:
        child.close()
    if row is None:
        return None
    parent = tables.trajectory_id(gold.SOURCE, gold.SOURCE, template.ref, task.id, 0)
    row.update(id=tables.trajectory_id(SOURCE, SOURCE, template.ref, vtask.id, 0), source=SOURCE, model=SOURCE,
               config={"converter": "variants/1", "parent_task_id": task.id, "parent_trajectory_id": parent,
                       "substitution": {f"{a:f}": f"{b:f}" for a, b in mapping.items()}, "seed": seed})  # fmt: skip
    return row


def drop_excluded(tasks: Sequence[Task], exclude: str | Path | None) -> tuple[list[Task], frozenset[str], int]:
    """(tasks not in the exclude file, its normalized questions, how many tasks were dropped)."""
    excluded = read_exclude(exclude) if exclude is not None else frozenset()
    kept = [t for t in tasks if normalize_question(t.question) not in excluded]
    return kept, excluded, len(tasks) - len(kept)
