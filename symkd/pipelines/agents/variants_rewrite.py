"""Program variants, the rewrite: new numbers into the code, the question and the thoughts; the check.

:func:`try_variant` makes one variant from a drawn mapping: the code re-run in the sandbox for the new
values, :func:`check` on them, then the question and every thought rewritten to match.
"""

from __future__ import annotations

import ast
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Sequence

from symkd.pipelines.agents import gold
from symkd.pipelines.agents.gsm8k import Task
from symkd.pipelines.agents.variants_numbers import (ASSIGN, NUM, NUMBER_WORD, WORD_VALUE, Plan, code_literals, decimal_places,
                                                     question_numbers)  # fmt: skip

_FINAL = re.compile(r"^\s*final_answer\((\w+)\)\s*$")


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
    for m in NUM.finditer(text):
        value = Decimal(m.group(0).replace(",", ""))
        new = literal_map.get(value, value if value in keep else computed.get(value, value))
        if new is None:
            return None
        out += [text[last : m.start()], _format(new, m.group(0)) if new != value else m.group(0)]
        last = m.end()
    values = {w: Decimal(WORD_VALUE[w.lower()]) for w in NUMBER_WORD.findall(text)}  # "five minutes", 5 changed
    words = {w: f"{literal_map[v]:f}" for w, v in values.items() if v in literal_map}
    return NUMBER_WORD.sub(lambda m: words.get(m.group(0), m.group(0)), "".join(out) + text[last:])


def _format(value: Decimal, like: str) -> str:
    """``value`` written like ``like``: its decimal places (more when needed, at most 4), its commas."""
    places = max(decimal_places(like), min(_exp(value), 4))
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{q:,f}" if "," in like else f"{q:f}"


def run_program(sandbox: Any, steps: Sequence[gold.GoldStep]) -> dict[str, Decimal | None] | None:
    """The values of the variables the steps assign (before the final step); None on an error."""
    names = [m.group(1) for s in steps[:-1] for line in s.code.splitlines() if (m := ASSIGN.match(line))]
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


def final_name(steps: Sequence[gold.GoldStep]) -> str | None:
    m = _FINAL.match(steps[-1].code) if steps else None
    return m.group(1) if m else None


def try_variant(task: Task, steps: Sequence[gold.GoldStep], plan: Plan, mapping: dict[Decimal, Decimal],
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
