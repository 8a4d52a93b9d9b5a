"""Local transformers backend: a hub id, a model folder or a ``.gguf`` file, batched.

Requests of one :meth:`HFTeacher.generate_batch` call are grouped by their sampling
parameters (everything but ``seed`` and ``n``); each group is one left-padded
``model.generate`` call with one batch row per sample.

Token choice is done by :class:`_Picker`, a logits processor placed last: greedy when the
temperature is 0, else temperature-then-top-p sampling where every row draws from its own
``torch.Generator`` seeded with ``seed + sample_index``. A seeded request therefore gives the
same text whatever else shares its batch (up to float rounding from the padding). The
picker also records each chosen token's log-probability under the model's raw
(untempered) distribution, which costs one ``[rows, vocab]`` tensor per step instead of
keeping every step's logits (``output_logits``) for ``compute_transition_scores``.

Text is cut at the first stop string (transformers' ``stop_strings`` ends the row early);
``token_logprobs`` cover exactly the tokens of the returned text (not the EOS token or the
tokens of the stop string), while ``usage.completion_tokens`` counts every generated token.

Ctrl-C: ``generate`` runs in a worker thread that a cancelled task cannot stop, so a
cancellation sets a flag that a stopping criterion reads after every token: the thread returns
within one decoding step instead of finishing the batch (minutes for long completions), and
the process exits at once. On the CPU the torch thread pool is this process's share of the
cores (:mod:`symkd.threads`), rechecked every batch.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.utils import logging as hf_logging

from symkd.errors import TeacherUnavailable
from symkd.teachers import gguf
from symkd.teachers.base import LocalTeacher
from symkd.teachers.decoding import first_stop, tokens_covering
from symkd.teachers.messages import Completion, GenerationParams, Request, Response, Usage
from symkd.threads import apply_torch_threads

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def sample_seed(seed: int | None, index: int) -> int:
    """The seed of sample ``index``: ``seed + index`` (wrapped to 63 bits), random when unseeded."""
    if seed is None:
        return random.SystemRandom().getrandbits(63)
    return (seed + index) % (2**63)


class _Picker(LogitsProcessor):
    """Chooses every row's next token itself and returns a one-hot score row.

    ``generate`` runs greedy (``do_sample=False``), so its argmax takes the chosen token.
    """

    def __init__(self, temperature: float, top_p: float, seeds: list[int], record: bool):
        self.temperature, self.top_p, self.record = temperature, top_p, record
        # CPU generators: one cheap draw per row and step, the same numbers on any device
        self.generators = [torch.Generator().manual_seed(s) for s in seeds] if temperature > 0 else []
        #: per step: the chosen tokens' log-probabilities, shape [rows]
        self.logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        chosen = scores.argmax(-1) if self.temperature == 0 else self._sample(scores)
        if self.record:
            self.logprobs.append(torch.log_softmax(scores, -1).gather(1, chosen[:, None]).squeeze(1))
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, chosen[:, None], 0.0)

    def _sample(self, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.double() / self.temperature, -1)
        order = None
        if self.top_p < 1.0:
            probs, order = probs.sort(dim=-1, descending=True, stable=True)
            before = probs.cumsum(-1) - probs  # mass of the more likely tokens
            probs = probs.masked_fill(before >= self.top_p, 0.0)
        cdf = probs.cumsum(-1)
        draws = torch.tensor(
            [torch.rand((), generator=g, dtype=torch.float64).item() for g in self.generators],
            dtype=torch.float64,
            device=scores.device,
        )
        idx = torch.searchsorted(cdf, (draws * cdf[:, -1])[:, None], right=True).clamp_(max=cdf.shape[1] - 1)
        return (idx if order is None else order.gather(1, idx)).squeeze(1)


class _StopWhenSet(StoppingCriteria):
    """Ends every row of a ``generate`` call once ``event`` is set (checked after each token)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class HFTeacher(LocalTeacher):
    """A transformers causal LM answering chat and completion requests in batches."""

    backend = "hf"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 8,
        device: str = "auto",
        dtype: str = "auto",
        max_length: int | None = None,
        reuse_prefix: bool = True,
        n_threads: int | None = None,
    ):
        from symkd.teachers.embedded import model_id, offline_stand_in

        stand_in = offline_stand_in(model)
        super().__init__(model, batch_size=batch_size)
        #: the file actually loaded (the embedded GGUF standing in for its Hub id offline)
        self.source = str(stand_in) if stand_in else model
        if stand_in:
            self.model_id = model_id(self.source)  # its answers are the embedded model's, cached as such
        path = Path(model).expanduser()
        looks_local = model.endswith(".gguf") or model.startswith(("/", ".", "~"))
        if looks_local and not path.exists():
            raise TeacherUnavailable(f"hf teacher: cannot load {model!r}: no such file or folder")
        if path.suffix == ".gguf" and not path.is_file():
            raise TeacherUnavailable(f"hf teacher: cannot load {model!r}: not a file")
        self.device_name = device
        self.dtype_name = dtype
        self.max_length = max_length
        #: prefill the prompt prefix a batch shares once and keep it for the next call
        self.reuse_prefix = reuse_prefix
        self._prefix: Any = None
        self.n_threads = n_threads
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._model: Any = None
        self._tokenizer: Any = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": self.device_name, "dtype": self.dtype_name, "max_length": self.max_length}

    def cache_identity(self) -> tuple[str, str]:
        """The model, plus the dtype when one was chosen (:func:`~symkd.teachers.registry.with_dtype`)."""
        from symkd.teachers.registry import with_dtype

        backend, model = super().cache_identity()
        return backend, with_dtype(model, self.dtype_name)

    # ---- loading -------------------------------------------------------------------------

    def _device_and_dtype(self) -> tuple[torch.device, torch.dtype]:
        name = self.device_name
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except RuntimeError:
            raise TeacherUnavailable(f"hf teacher: unknown device {self.device_name!r}") from None
        if self.dtype_name == "auto":
            if device.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                dtype = torch.float32
        elif self.dtype_name in _DTYPES:
            dtype = _DTYPES[self.dtype_name]
        else:
            raise TeacherUnavailable(f"hf teacher: dtype must be auto, {', '.join(_DTYPES)}; not {self.dtype_name!r}")
        return device, dtype

    def load(self) -> None:
        """Load tokenizer and model once (thread-safe). Raises TeacherUnavailable on failure."""
        with self._lock:
            if self._model is not None:
                return
            device, dtype = self._device_and_dtype()
            path = Path(self.source).expanduser()
            source, extra = str(path) if path.exists() else self.source, {}
            if path.suffix == ".gguf":
                source, extra = str(path.parent), {"gguf_file": path.name}
            try:
                with _quiet_loading():
                    tokenizer = AutoTokenizer.from_pretrained(source, **extra)
                    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **gguf.unpacked(extra))
            except (OSError, ValueError, ImportError, RuntimeError, KeyError) as exc:
                raise TeacherUnavailable(f"hf teacher: cannot load {self.model!r}: {_reason(exc, path)}") from None
            try:
                model.to(device).eval()
            except (RuntimeError, AssertionError) as exc:  # e.g. CUDA asked for but absent
                raise TeacherUnavailable(f"hf teacher: cannot move {self.model!r} to {device}: {exc}") from None
            tokenizer.padding_side = "left"
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            eos = model.generation_config.eos_token_id
            eos = list(eos) if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
            if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
                eos.append(tokenizer.eos_token_id)
            self._eos_ids = eos
            self._limit = self.max_length or getattr(model.config, "max_position_embeddings", None)
            self._device = device
            self._tokenizer, self._model = tokenizer, model

    async def preflight(self) -> None:
        await asyncio.to_thread(self.load)

    async def agenerate(self, requests: Any, on_response: Any) -> None:
        """The base's batching loop; a cancellation also ends the ``generate`` running in its thread."""
        self._stop.clear()
        try:
            await super().agenerate(requests, on_response)
        except asyncio.CancelledError:
            self._stop.set()
            raise

    async def aclose(self) -> None:
        with self._lock:
            self._model = self._tokenizer = self._prefix = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---- generation ----------------------------------------------------------------------

    def generate_batch(self, requests: Sequence[Request]) -> list[Response]:
        """Answer ``requests`` (same order): one ``generate`` call per group of equal params."""
        self.load()
        if self._device.type == "cpu":
            apply_torch_threads(self.n_threads)
        out: list[Response | None] = [None] * len(requests)
        groups: dict[GenerationParams, list[tuple[int, list[int]]]] = {}
        for i, request in enumerate(requests):
            try:
                ids = self._prompt_ids(request)
            except ValueError as exc:
                out[i] = Response(error=str(exc))
                continue
            key = request.params.model_copy(update={"seed": None, "n": 1})
            groups.setdefault(key, []).append((i, ids))
        for members in groups.values():
            answers = self._generate_group([requests[i] for i, _ in members], [ids for _, ids in members])
            for (i, _), answer in zip(members, answers):
                out[i] = answer
        return cast("list[Response]", out)  # every slot is filled above

    def _prompt_ids(self, request: Request) -> list[int]:
        """Token ids of the prompt: the chat template for chat requests, raw text otherwise."""
        tok = self._tokenizer
        if request.messages is not None:
            if not getattr(tok, "chat_template", None):
                raise ValueError(f"{self.model_id} has no chat template: send a completion prompt instead")
            text = tok.apply_chat_template(
                [m.model_dump() for m in request.messages], add_generation_prompt=True, tokenize=False
            )
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(request.prompt)["input_ids"]
        if not ids:
            raise ValueError("the prompt is empty after tokenization")
        if self._limit and len(ids) + request.params.max_tokens > self._limit:
            raise ValueError(
                f"prompt ({len(ids)} tokens) + max_tokens ({request.params.max_tokens}) "
                f"exceeds the context of {self._limit} tokens"
            )
        return ids

    def _generation_kwargs(self, params: GenerationParams) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` beyond inputs and the picker.

        The single place where decoding constraints go (I2D2's NeuroLogic, lite; see
        :mod:`symkd.teachers.constraints`): ``forbid_words`` become ``bad_words_ids``, and
        ``require_words`` a processor that forces a missing phrase in while there is room for
        it. Processors returned under ``logits_processor`` run before the picker.
        """
        from symkd.teachers.constraints import generation_config_updates, hf_processors

        config = GenerationConfig(
            max_new_tokens=params.max_tokens,
            do_sample=False,
            num_beams=1,
            temperature=1.0,
            top_p=1.0,
            top_k=50,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            eos_token_id=self._eos_ids,
            pad_token_id=self._tokenizer.pad_token_id,
            stop_strings=list(params.stop) or None,
            return_dict_in_generate=True,
            **generation_config_updates(self._tokenizer, params),
        )
        kwargs: dict[str, Any] = {"generation_config": config}
        if params.stop:
            kwargs["tokenizer"] = self._tokenizer
        processors = hf_processors(self._tokenizer, params, self._eos_ids)
        if processors:
            kwargs["logits_processor"] = processors
        return kwargs

    def _generate_group(self, requests: list[Request], prompts: list[list[int]]) -> list[Response]:
        """One batched ``generate`` for requests that share their params (seeds may differ)."""
        params = requests[0].params
        rows = [(r, j) for r, req in enumerate(requests) for j in range(params.n)]  # a group shares its n
        inputs = self._batch_inputs(prompts, params.max_tokens, params.n)
        width = inputs["input_ids"].shape[1]
        seeds = [sample_seed(requests[r].params.seed, j) for r, j in rows]
        picker = _Picker(params.temperature, params.top_p, seeds, params.logprobs)
        kwargs = self._generation_kwargs(params)
        with torch.inference_mode():
            result = self._model.generate(
                **{k: v.to(self._device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()},
                logits_processor=LogitsProcessorList([*kwargs.pop("logits_processor", []), picker]),
                stopping_criteria=StoppingCriteriaList([_StopWhenSet(self._stop)]),
                **kwargs,
            )
        generated = result.sequences[:, width:].tolist()
        logprobs = torch.stack(picker.logprobs, 1).tolist() if picker.logprobs else None
        responses = [Response(usage=Usage(prompt_tokens=len(p))) for p in prompts]
        for row, (r, _) in enumerate(rows):
            completion, used = self._finish(generated[row], params, logprobs[row] if logprobs else None)
            responses[r].completions.append(completion)
            responses[r].usage.completion_tokens += used
        return responses

    def _batch_inputs(self, prompts: list[list[int]], max_new_tokens: int, copies: int) -> dict[str, Any]:
        """Padded ``generate`` inputs, each prompt ``copies`` rows, what they share prefilled once (prefix_cache)."""
        from symkd.teachers.prefix_cache import PrefixCache, left_padded

        pad = self._tokenizer.pad_token_id
        if not self.reuse_prefix or not getattr(self._model, "_can_compile_fullgraph", False):
            return left_padded([p for p in prompts for _ in range(copies)], pad)  # transformers' default
        if self._prefix is None:
            self._prefix = PrefixCache(self._model, self._device)
        return self._prefix.batch_inputs(prompts, pad, max_new_tokens, copies)

    def _finish(self, tokens: list[int], params: GenerationParams, logprobs: list[float] | None) -> tuple[Completion, int]:
        """Text, finish reason and logprobs of one row; also the number of tokens it generated."""
        decode = self._decode
        eos_at = next((i for i, t in enumerate(tokens) if t in self._eos_ids), None)
        body = tokens if eos_at is None else tokens[:eos_at]
        pad = self._tokenizer.pad_token_id
        while eos_at is None and body and body[-1] == pad:
            body = body[:-1]  # a row that a stop string ended early, padded to the batch
        text = decode(body)
        stop = first_stop(text, params.stop)
        if stop is not None:
            text, reason = text[: stop[0]], "stop"
            kept, used = tokens_covering(decode, body, len(text)), tokens_covering(decode, body, stop[1])
        else:
            kept = len(body)
            used = kept + (eos_at is not None)
            reason = "length" if eos_at is None and len(body) >= params.max_tokens else "stop"
        lps = [float(x) for x in logprobs[:kept]] if logprobs is not None else None
        return Completion(text=text, finish_reason=reason, token_logprobs=lps), used

    def _decode(self, tokens: Sequence[int]) -> str:
        return self._tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No progress bars while loading (the GGUF converter uses tqdm directly)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    original = getattr(gguf_utils, "tqdm", None)
    if original is not None:
        gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original
        if bars:
            hf_logging.enable_progress_bar()


def _reason(exc: Exception, path: Path) -> str:
    """One line saying why loading failed."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    if isinstance(exc, OSError) and not path.exists():
        return "no such folder or hub id" + (" (offline)" if offline else "")
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0][:300]
