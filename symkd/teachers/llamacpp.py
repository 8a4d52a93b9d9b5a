"""In-process llama.cpp backend for GGUF files (``llama-cpp-python``).

Chat requests go through ``create_chat_completion`` (the GGUF's own chat template unless
``chat_format`` names another), completion requests through ``create_completion``; ``n``
samples are ``n`` calls, the prompt's KV cache reused between them.

Token choice is done by :class:`_Picker`, a llama.cpp logits processor: it takes each token
itself — greedy at temperature 0, else temperature-then-top-p sampling (the same order as
the hf backend and the OpenAI API) from a numpy generator seeded with ``seed + sample
index`` — and masks every other token, so llama.cpp's own sampler, run greedy, takes it.
The picker also records each token's log-probability under the model's raw distribution,
for chat and completion alike and without ``logits_all`` (whose ``logprobs`` path scores the
whole vocabulary in Python for every token and also counts the stop string's tokens).
``token_logprobs`` cover exactly the tokens of the returned text; ``usage.completion_tokens``
counts every generated token, the end-of-generation token included.

A prompt longer than ``n_ctx`` fails that request alone; when prompt plus ``max_tokens`` does
not fit, llama.cpp shortens ``max_tokens`` to what does (finish reason ``length``).

Reproducibility: a request gives the same text whatever ran before it, however requests were
batched. llama.cpp keeps the KV cache of the longest prompt prefix a request shares with the
one before (few-shot templates share long ones: about 2x faster on the commonsense pipeline)
and evaluates only the rest. The numbers a token gets may depend on the batch it was
evaluated in (llama.cpp picks kernels, tilings and summation orders by batch size on some
CPUs and builds), so reusing an arbitrary prefix could make a greedy answer depend on the
previous request (reported: "The answer is 4." and "The answer to this classic math problem
is" for one request; the two CPUs measured with llama-cpp-python 0.3.36 happened to give
bit-identical logits either way). :class:`_AlignedPrefix` makes every prompt evaluate in the
same fixed chunks, aligned to absolute positions (:data:`CHUNK` tokens), and reuses only whole
chunks that were evaluated that way: each token always gets the computation a fresh
evaluation would give it, on any CPU. Logs: the model is built with ``verbose=False``;
llama.cpp prints nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from symkd.errors import TeacherUnavailable
from symkd.teachers.base import LocalTeacher
from symkd.teachers.decoding import first_stop, tokens_covering
from symkd.teachers.messages import Completion, GenerationParams, Request, Response


#: prompt evaluation chunk (llama.cpp ``n_batch``); cached prefixes are reused in whole chunks.
#: Measured (2 CPU cores, 1 thread, 385-token few-shot prompt, 12 tokens each): CPU time 1.12x
#: that of reusing any prefix, against 10x for evaluating every prompt afresh; prompt
#: evaluation costs the same per token in chunks of 16 as of 512 (6.6 vs 6.5 ms).
CHUNK = 16


class _AlignedPrefix:
    """Replaces ``llm.eval`` so that prompts are evaluated in chunks aligned to multiples of
    ``chunk`` positions, whatever prefix llama.cpp found in its cache.

    :meth:`arm` is called before each request; the first ``eval`` after it (the prompt's)
    moves its start back to the last aligned boundary below which the cache holds only
    prompt tokens evaluated in aligned chunks, and re-evaluates from there. Later calls (one
    sampled token each) pass through.
    """

    def __init__(self, llm: Any, chunk: int):
        self.llm, self.chunk = llm, chunk
        self.clean = 0  # positions [0, clean) hold whole aligned chunks of prompt tokens
        self.armed = False
        self.original = llm.eval
        llm.eval = self

    def arm(self) -> None:
        self.armed = True
        self.llm._requires_eval = True  # never sample from logits left by another request

    def __call__(self, tokens: Sequence[int]) -> None:
        llm = self.llm
        if not self.armed:
            return self.original(tokens)
        self.armed = False
        keep = min(llm.n_tokens, self.clean)
        keep -= keep % self.chunk
        tokens = [*llm.input_ids[keep : llm.n_tokens].tolist(), *tokens]
        llm.n_tokens = keep
        self.clean = keep  # until the chunks below are evaluated again
        self.original(tokens)
        self.clean = llm.n_tokens - llm.n_tokens % self.chunk


def sample_seed(seed: int | None, index: int) -> int | None:
    """The seed of sample ``index``: ``seed + index`` wrapped to 63 bits (None stays random)."""
    return None if seed is None else (seed + index) % (2**63)


def default_threads() -> int:
    """This process's share of its CPUs (:mod:`symkd.threads`: other symkd processes running
    models count), at most 8 (more rarely helps a decode step). Fixed when the model loads."""
    from symkd.threads import register, thread_share

    register()
    return max(1, min(8, thread_share()))


class _Picker:
    """A llama.cpp logits processor that chooses the next token and records its logprob."""

    def __init__(self, temperature: float, top_p: float, seed: int | None):
        self.temperature, self.top_p = temperature, top_p
        self.rng = np.random.default_rng(seed)
        self.tokens: list[int] = []
        self.logprobs: list[float] = []

    def __call__(self, input_ids: Any, logits: np.ndarray) -> np.ndarray:
        x = np.asarray(logits, dtype=np.float64)
        top = x.max()
        log_total = top + np.log(np.exp(x - top).sum())
        token = int(x.argmax()) if self.temperature == 0 else self._sample(x, top)
        self.tokens.append(token)
        self.logprobs.append(float(x[token] - log_total))
        out = np.full(x.shape, -np.inf, dtype=np.float32)
        out[token] = 0.0
        return out

    def _sample(self, x: np.ndarray, top: float) -> int:
        probs = np.exp((x - top) / self.temperature)
        order = None
        if self.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            probs = probs[order] / probs.sum()
            before = np.cumsum(probs) - probs  # mass of the more likely tokens
            probs[before >= self.top_p] = 0.0
        cdf = np.cumsum(probs)
        i = min(int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")), len(cdf) - 1)
        return int(i if order is None else order[i])


class LlamaCppTeacher(LocalTeacher):
    """A GGUF model run in-process by llama.cpp, one request at a time."""

    backend = "llamacpp"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 1,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        chat_format: str | None = None,
    ):
        super().__init__(model, batch_size=batch_size)
        path = Path(model).expanduser()
        if not path.is_file():
            raise TeacherUnavailable(f"llamacpp teacher: no such GGUF file: {model}")
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise TeacherUnavailable(f"llamacpp teacher: cannot read {model}: {exc.strerror}") from None
        if magic != b"GGUF":
            raise TeacherUnavailable(f"llamacpp teacher: {model} is not a GGUF file")
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.chat_format = chat_format
        self._lock = threading.Lock()
        self._llm: Any = None
        self._aligned: _AlignedPrefix | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_ctx": self.n_ctx, "n_threads": self.n_threads, "chat_format": self.chat_format}

    def load(self) -> Any:
        """The ``llama_cpp.Llama``, built on first use (thread-safe); TeacherUnavailable on failure."""
        with self._lock:
            if self._llm is None:
                try:
                    with _plain_cpu_buffers():
                        self._llm = llama_cpp.Llama(
                            model_path=str(self.path),
                            n_ctx=self.n_ctx,
                            n_threads=self.n_threads,
                            n_threads_batch=self.n_threads,
                            n_batch=CHUNK,
                            chat_format=self.chat_format,
                            verbose=False,
                        )
                        self._aligned = _AlignedPrefix(self._llm, CHUNK)
                except (ValueError, RuntimeError, OSError) as exc:
                    raise TeacherUnavailable(f"llamacpp teacher: cannot load {self.model}: {exc}") from None
            return self._llm

    async def preflight(self) -> None:
        await asyncio.to_thread(self.load)

    async def aclose(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    def generate_batch(self, requests: Sequence[Request]) -> list[Response]:
        """Answer each request in turn (llama.cpp decodes one sequence at a time)."""
        llm = self.load()
        with self._lock:
            return [self._answer(llm, request) for request in requests]

    def _answer(self, llm: Any, request: Request) -> Response:
        p = request.params
        response = Response()
        for j in range(p.n):
            picker = _Picker(p.temperature, p.top_p, sample_seed(p.seed, j))
            try:
                text, reason, usage = self._call(llm, request, picker)
            except ValueError as exc:  # e.g. the prompt does not fit the context
                return Response(error=f"llamacpp: {exc}")
            completion, used = self._finish(llm, text, reason, picker, p)
            response.completions.append(completion)
            response.usage.prompt_tokens = usage["prompt_tokens"]
            response.usage.completion_tokens += used
        return response

    def _call(self, llm: Any, request: Request, picker: _Picker) -> tuple[str, str | None, dict[str, int]]:
        """One llama.cpp call: (text, finish reason, usage)."""
        kwargs = self._sampling_kwargs(request.params)
        kwargs["logits_processor"] = llama_cpp.LogitsProcessorList([picker])
        self._aligned.arm()  # reuse only whole aligned chunks of the cached prefix (see the module doc)
        if request.messages is not None:
            out = llm.create_chat_completion(messages=[m.model_dump() for m in request.messages], **kwargs)
            choice = out["choices"][0]
            text = choice["message"].get("content") or ""
        else:
            out = llm.create_completion(request.prompt, **kwargs)
            choice = out["choices"][0]
            text = choice["text"]
        return text, choice.get("finish_reason"), dict(out.get("usage") or {"prompt_tokens": 0})

    def _sampling_kwargs(self, params: GenerationParams) -> dict[str, Any]:
        """llama.cpp arguments: greedy over the picker's one-hot logits, with no other filter."""
        return {
            "max_tokens": params.max_tokens,
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": 0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "stop": list(params.stop) or None,
        }

    def _finish(
        self, llm: Any, text: str, reason: str | None, picker: _Picker, params: GenerationParams
    ) -> tuple[Completion, int]:
        """The completion (text cut at the earliest stop, logprobs of its tokens) and tokens used."""
        tokens = picker.tokens
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        body = tokens[:-1] if tokens and llama_cpp.llama_vocab_is_eog(vocab, tokens[-1]) else tokens
        stop = first_stop(text, params.stop)
        if stop is not None:
            text, reason = text[: stop[0]], "stop"
        logprobs = None
        if params.logprobs:

            def decode(ids: Sequence[int]) -> str:
                return llm.detokenize(list(ids)).decode("utf-8", errors="ignore")

            kept = len(body) if reason == "length" else tokens_covering(decode, body, len(text))
            logprobs = picker.logprobs[:kept]
        return Completion(text=text, finish_reason=reason, token_logprobs=logprobs), len(tokens)


@contextmanager
def _plain_cpu_buffers() -> Iterator[None]:
    """On AMX CPUs, load weights without llama.cpp's extra (AMX/repack) buffer types.

    With this llama-cpp-python build, ``ggml_backend_amx_mul_mat`` crashes (SIGSEGV) on the
    first decode when weights sit in AMX buffers. ``Llama`` has no argument for
    ``use_extra_bufts``, so the default model params are amended while the model loads.
    """
    lib = llama_cpp.llama_cpp
    if b"AMX_INT8 = 1" not in lib.llama_print_system_info():
        yield
        return
    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = original
