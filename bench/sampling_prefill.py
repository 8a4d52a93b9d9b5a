"""n samples of one prompt: its own part prefilled once for the n rows vs once per row.

    python bench/sampling_prefill.py --prompts 16 --n 4 --max-tokens 64

maj@K, SAG and self-training ask for n completions of one prompt. The transformers backend
prefills the prefix a whole batch shares once; this measures prefilling each prompt's own
part once too and copying its cache to its n rows ("copies": one request with ``n``) against
n requests of the same prompt ("separate": every row prefilled on its own, as before), with the
same rows per ``generate``. The prompts are like a later agent step's: a shared system prompt,
a GSM8K train question, its gold rationale as the assistant's turn and a follow-up, so each
has a long part of its own. Greedy: in float32 both arms must give the same text (checked); in
bfloat16 a different split of the prefill rounds differently and a near-tie may flip a row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from symkd.teachers.embedded import locate
from symkd.teachers.hf import HFTeacher
from symkd.teachers.messages import GenerationParams, Message, Request

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
SYSTEM = ("You solve grade-school math problems. Think step by step, write Python code for every "
          "computation, and check the result before you give the final answer.")  # fmt: skip


def requests(count: int, n: int, copies: bool, max_tokens: int) -> list[Request]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:count]]
    params = GenerationParams(n=n if copies else 1, temperature=0, max_tokens=max_tokens)
    out = []
    for i, row in enumerate(rows):
        messages = [Message(role="system", content=SYSTEM), Message(role="user", content=row["question"]),
                    Message(role="assistant", content=row["answer"]), Message(role="user", content="Check it in Python.")]  # fmt: skip
        out += [Request(id=f"q{i}", messages=messages, params=params)] if copies else \
            [Request(id=f"q{i}.{j}", messages=messages, params=params) for j in range(n)]  # fmt: skip
    return out


def arm(teacher: HFTeacher, batch: list[Request], requests_per_call: int) -> tuple[float, list[str]]:
    teacher.batch_size = requests_per_call
    started = time.perf_counter()
    responses = teacher.generate_batch(batch)
    return time.perf_counter() - started, [c.text for r in responses for c in r.completions]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    teacher = HFTeacher(str(locate("smollm2")), dtype=args.dtype)
    teacher.load()
    arm(teacher, requests(2, args.n, True, 4), 2)  # load + warm up
    separate, s_text = arm(teacher, requests(args.prompts, args.n, False, args.max_tokens), args.prompts * args.n)
    copies, c_text = arm(teacher, requests(args.prompts, args.n, True, args.max_tokens), args.prompts)
    report = {"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens, "dtype": args.dtype,
              "rows_per_generate": args.prompts * args.n, "separate_seconds": round(separate, 2),
              "copies_seconds": round(copies, 2), "speedup": round(separate / copies, 2),
              "same_rows": sum(a == b for a, b in zip(s_text, c_text)), "own_tokens_prefilled_once": teacher._prefix.copied}  # fmt: skip
    command = f"python bench/sampling_prefill.py --prompts {args.prompts} --n {args.n} --max-tokens {args.max_tokens}"
    record("sampling_prefill", report, title="n samples of one prompt: prefilled once (bench/sampling_prefill.py)",
           write=not args.no_write, notes=(
               f"Command: `{command}`. Embedded SmolLM2-135M on the transformers backend ({args.dtype}, CPU), "
               "greedy; one generate of all rows per arm. `separate`: n requests per prompt, each row prefilled; "
               "`copies`: one request with n, its own part prefilled once and its cache copied to the n rows. "
               "`same_rows`: rows whose completion is the same in both arms (float32: all of them, checked)."))  # fmt: skip
    if args.dtype == "float32" and report["same_rows"] != report["rows_per_generate"]:
        sys.exit("bench: the two arms gave different completions in float32")


if __name__ == "__main__":
    main()
