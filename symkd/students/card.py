"""What a trained student folder says about itself: ``training.json``, a README card (Hub YAML
metadata), the LoRA adapter's card, a curve PNG; with no path of the training machine in them
(:func:`portable_summary`), so the folder loads and reads the same anywhere. An evaluation of the
student (:func:`record_evaluation`) is added to ``training.json`` and the card's table and
``model-index``."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from symkd.errors import UserError
from symkd.jsonio import atomic_write
from symkd.plugins import Registry

CARD = """# {name}

A student trained by [symkd](https://github.com/symkd/symkd) (`symkd train`).

- Base model: {base_line}; {method}, {trainable:,} of {total:,} parameters trained
- Data: {data}
- Examples: {train_examples:,} for training, {eval_examples:,} held out (split by head); {too_long} longer than {max_length} tokens left out
- Steps: {steps:,} optimizer steps of {batch} examples ({epochs:.2f} epochs); learning rate {lr}
- Loss: {loss_line}
- Hardware: {hardware}; {tokens_per_s:,.0f} training tokens/s{mfu}

## Files
The weights here are the whole student{merged}: plain transformers loads the folder,
`AutoModelForCausalLM.from_pretrained("{name}")`, no peft needed.{adapter}
`training.json` holds the full configuration, data filters and each step's losses, tokens and
seconds (local files named relative to this folder, or by their name); `training_curve.png` plots
the loss and the speed.

{usage}"""

ADAPTER_NOTE = """ `adapter/` holds the LoRA adapter
alone, for peft (its base: `{base}`{relative}); see `adapter/README.md`."""

ADAPTER_CARD = """# {name}: LoRA adapter

The LoRA adapter (r={r}, alpha {alpha}) of the symkd student `{name}` (the folder above, whose
README has the data, losses and usage; it also holds the merged model, which needs no peft).

## Load with peft

    from peft import AutoPeftModelForCausalLM
    model = AutoPeftModelForCausalLM.from_pretrained("{load}"){comment}

The base is `{base}`{relative}.{offline}
"""

OFFLINE = (" The student trained on symkd's embedded copy of it (`{embedded}`: the GGUF file `{gguf}`, dequantized), "
           "which the Hub's full-precision weights match closely but not exactly. Offline, symkd stands that copy in "
           "for the id: `symkd.students.modeling.load_causal_lm(\"{name}/adapter\")` loads base and adapter merged, "
           "and `load_causal_lm(\"{base}\").model` is a base for `PeftModel.from_pretrained`.")  # fmt: skip


@dataclass(frozen=True)
class CardSection:
    """The card's tag and usage section for one kind of training data (``data.source.kind``);
    ``text`` is formatted with ``name_path``, ``example_prompt`` and ``example_completion``."""

    tag: str
    text: str


CHAT = CardSection("chat", """## Use as a chat model
Trained on chat conversations: the loss covered the last assistant message (of a prompt-completion
row, its completion). Prompt it with the tokenizer's chat template and the same system prompt as
the training data (for GSM8K worked solutions: `symkd agent eval-gsm8k --mode cot --model {name_path}
--data test.jsonl`).
""")
#: for data whose kind no pipeline describes
GENERIC = CardSection("text-generation", """## Input format
Prompt and completion as in the training data, e.g.

    {example_prompt}{example_completion}

Generate from the prompt; the text up to EOS is the completion.
""")
#: data kind -> :class:`CardSection`: the core's ``chat``, then the ``symkd.cards`` entry points
#: (each pipeline describes the data it makes)
CARDS = Registry("symkd.cards", "model-card section", {"chat": "symkd.students.card:CHAT"})


def card_section(kind: str | None) -> CardSection:
    """The section registered for the data kind; :data:`GENERIC` for a kind none describes."""
    if not kind or kind not in CARDS:
        return GENERIC
    section = CARDS.load(kind)
    if not isinstance(section, CardSection):
        raise UserError(f"model-card section {kind!r}: not a symkd.students.card.CardSection")
    return section


def usage_section(kind: str | None, **values: Any) -> tuple[str, str]:
    """(tag, usage text) for the data kind (see :func:`card_section`)."""
    section = card_section(kind)
    return section.tag, section.text.format(**values)


def base_record(name: str, out: Path) -> dict[str, Any]:
    """How the student names its base on any machine: ``model`` (Hub id or a path relative to
    ``out``), ``hub_id`` (None for a local model), ``gguf`` (the file when the weights came from
    one), ``license`` (when known)."""
    from symkd.students.modeling import hub_id, portable_name, resolve_source

    try:
        gguf = resolve_source(name)[1].get("gguf_file")
    except UserError:
        gguf = None
    hub = hub_id(name)
    return {"model": portable_name(name, out), "hub_id": hub, "gguf": gguf, "license": _license(hub, name)}


def write_card(out: Path, summary: dict[str, Any]) -> None:
    """The README card, the adapter's card and config (LoRA), then ``training.json`` (last: it
    marks a complete model); none of them names a path on this machine."""
    record = portable_summary(summary, out)
    if (out / "adapter").is_dir():
        _write_adapter(out / "adapter", record)
    scrub_configs(out, record["base"]["model"])
    _write_text(out / "README.md", card_text(out.name, record))
    with atomic_write(out / "training.json") as fh:
        json.dump(record, fh, indent=2)


def portable_summary(summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """``summary`` without machine paths: the folder by its name, local models relative to it,
    data files by their name."""
    from symkd.students.modeling import portable_name

    record = copy.deepcopy(summary)
    cfg = record["config"]
    record.setdefault("base", base_record(cfg["base_model"], out))
    cfg["out"] = out.name
    for key in ("base_model", "teacher_model"):
        if cfg.get(key) and _is_local(cfg[key]):
            cfg[key] = portable_name(cfg[key], out)
    source = record["data"]["source"]
    record["data"]["source"] = {k: Path(v).name if isinstance(v, str) and _is_local(v) else v for k, v in source.items()}
    return record


def _is_local(value: str) -> bool:
    path = Path(value).expanduser()
    return path.is_absolute() or value.startswith(("./", "../", "~")) or path.exists()


def card_metadata(name: str, record: dict[str, Any], adapter: bool = False) -> dict[str, Any]:
    """The card's Hub YAML: base_model (a Hub id, when there is one), library, licence, tags,
    the data and training counts under ``symkd``, the held-out loss as ``model-index``."""
    from huggingface_hub import ModelCardData

    cfg, base = record["config"], record["base"]
    tag = card_section(record["data"]["source"].get("kind")).tag
    tags = ["symkd", "knowledge-distillation", tag] + (["lora"] if cfg["lora"] else [])
    if adapter and base["hub_id"]:
        tags.append(f"base_model:adapter:{base['hub_id']}")
    license_id, held = base.get("license"), (_held_out(record) or []) + _evaluation_results(record)
    return ModelCardData(
        base_model=base["hub_id"], base_model_relation=("adapter" if adapter else "finetune") if base["hub_id"] else None,
        library_name="peft" if adapter else "transformers", pipeline_tag="text-generation",
        license=license_id or "other", license_name=None if license_id else "same-as-base-model",
        tags=tags, model_name=name if held else None, eval_results=held or None, symkd=_symkd_metadata(record),
    ).to_dict()  # fmt: skip


def _held_out(record: dict[str, Any]) -> list[Any] | None:
    """The held-out loss as a Hub evaluation result (None when nothing was held out)."""
    from huggingface_hub import EvalResult

    loss, source = record["final"].get("eval_loss"), record["data"]["source"]
    if loss is None:
        return None
    dataset = str(source.get("path") or source.get("db") or source.get("kind") or "training data")
    return [EvalResult(task_type="text-generation", dataset_type=f"symkd-{source.get('kind') or 'triples'}",
                       dataset_name=dataset, dataset_split="held-out", metric_type="loss", metric_name="held-out loss",
                       metric_value=loss)]  # fmt: skip


def _symkd_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """Provenance and counts: the base as named here, the data's source and sizes, the training run."""
    cfg, data, final = record["config"], record["data"], record["final"]
    counts = {k: data[k] for k in ("examples", "train_examples", "eval_examples", "too_long", "negatives") if k in data}
    training = {"method": "lora" if cfg["lora"] else "full", "steps": record["steps"], "epochs": round(record["epochs"], 4),
                "learning_rate": cfg["lr"], "train_loss": final.get("train_loss"), "eval_loss": final.get("eval_loss")}  # fmt: skip
    return {"version": record.get("symkd_version"), "base": record["base"]["model"], "base_gguf": record["base"]["gguf"],
            "data": {"source": data["source"], **counts}, "training": training}  # fmt: skip


def _license(hub: str | None, given: str) -> str | None:
    """The base's licence: an embedded model's, or a local base folder's card's."""
    from symkd.teachers.embedded import EMBEDDED, by_origin

    entry = EMBEDDED.get(by_origin(hub or "") or "")
    if entry is not None:
        return entry.license
    readme = Path(given).expanduser() / "README.md"
    if readme.is_file():
        import yaml
        from huggingface_hub import metadata_load

        try:
            found = (metadata_load(readme) or {}).get("license")
        except (OSError, ValueError, yaml.YAMLError, AttributeError):
            return None  # a card we cannot read names no licence
        return found if isinstance(found, str) else None
    return None


def _front_matter(metadata: dict[str, Any]) -> str:
    import yaml

    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n"


def card_text(name: str, record: dict[str, Any]) -> str:
    cfg, data, final, base = record["config"], record["data"], record["final"], record["base"]
    loss_line = f"train {final['train_loss']:.4f}" if final.get("train_loss") is not None else "train -"
    if final.get("eval_loss") is not None:
        loss_line += f", held-out {final['eval_loss']:.4f}"
    if cfg.get("kd_loss"):
        loss_line += f" (CE mixed with {cfg['kd_loss']} KD from `{cfg['teacher_model']}`, weight {cfg['kd_weight']})"
    if cfg.get("loss") == "redi":
        loss_line += (f" (REDI objective, alpha {cfg['redi_alpha']}, {data.get('negatives', 0):,} negative examples; "
                      "held-out loss on positives)")  # fmt: skip
    src = data["source"]
    described = ", ".join(f"{k}={v}" for k, v in src.items() if v not in (None, [], ""))
    mfu = f", MFU {record['throughput']['mfu']:.1%}" if record["throughput"].get("mfu") else ""
    _, usage = usage_section(src.get("kind"), name_path=name, example_prompt=data.get("example_prompt", ""),
                             example_completion=data.get("example_completion", ""))  # fmt: skip
    relative = " relative to the student folder" if not base["hub_id"] else ""
    text = CARD.format(
        usage=usage, name=name, base_line=_base_line(base), merged=", the LoRA adapter merged in" if cfg["lora"] else "",
        adapter=ADAPTER_NOTE.format(base=base["model"], relative=relative) if cfg["lora"] else "",
        method=f"LoRA r={cfg['lora_r']}, merged" if cfg["lora"] else "full fine-tuning",
        trainable=record["parameters"]["trainable"], total=record["parameters"]["total"],
        data=described, train_examples=data["train_examples"], eval_examples=data["eval_examples"],
        too_long=data["too_long"], max_length=data.get("max_length", cfg["max_length"]), steps=record["steps"],
        batch=record.get("global_batch", cfg["batch_size"] * cfg["grad_accum"]), epochs=record["epochs"], lr=cfg["lr"],
        loss_line=loss_line, hardware=record["hardware"]["description"],
        tokens_per_s=record["throughput"]["tokens_per_s"], mfu=mfu,
    )  # fmt: skip
    return _front_matter(card_metadata(name, record)) + text + evaluation_section(record)


def record_evaluation(student_dir: str | Path, name: str, metrics: dict[str, Any], *, dataset: str | None = None,
                      split: str | None = None, task_type: str = "text-generation",
                      details: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Add (or replace) the evaluation ``name`` of the student in ``student_dir``: its numeric
    ``metrics`` (others, e.g. per-relation tables, are left out), the ``dataset`` file (by its
    name), ``split`` and flat ``details`` (e.g. the decoding) go into ``training.json`` under
    ``evaluations``, and the README card is rendered again with them in its evaluation table and
    Hub ``model-index``. Both files are replaced atomically (temporary file + rename), under a
    lock on the folder so two evaluations recording at once both land. Returns the entry."""
    out = Path(student_dir)
    path = out / "training.json"
    if not path.is_file():
        raise UserError(f"{out}: not a trained symkd student (no training.json)")
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not name.strip() or not numbers:
        raise UserError(f"evaluation {name!r}: needs a name and at least one numeric metric")
    entry = {"metrics": numbers, "dataset": _portable(dataset) if dataset else None, "split": split,
             "task_type": task_type, "details": _portable(details or {}),
             "recorded_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
    with _folder_lock(out):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read the student's record ({exc})") from None
        record.setdefault("evaluations", {})[name] = entry
        with atomic_write(path) as fh:
            json.dump(record, fh, indent=2)
        _write_text(out / "README.md", card_text(out.name, record))
    return entry


def record_if_student(model: str | Path | None, name: str, metrics: dict[str, Any], **options: Any) -> dict[str, Any] | None:
    """:func:`record_evaluation` when ``model`` (a folder, or ``hf:FOLDER``) is a trained symkd
    student; None (nothing written) for a teacher spec, a Hub id or a folder without ``training.json``."""
    if model is None:
        return None
    text = str(model)
    folder = Path(text[3:] if text.startswith("hf:") else text).expanduser()
    if not (folder / "training.json").is_file():
        return None
    return record_evaluation(folder, name, metrics, **options)


def _portable(value: Any) -> Any:
    """Strings naming a local path (in lists and mappings too): just the file name; the rest as it is."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v) for v in value]
    return Path(value).name if isinstance(value, str) and _is_local(value) else value


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the atomic writes still leave whole files
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _evaluation_results(record: dict[str, Any]) -> list[Any]:
    """The recorded evaluations as Hub evaluation results, one per metric."""
    from huggingface_hub import EvalResult

    results = []
    for name, entry in (record.get("evaluations") or {}).items():
        for metric, value in entry["metrics"].items():
            results.append(EvalResult(task_type=entry.get("task_type") or "text-generation", dataset_type=name,
                                      dataset_name=entry.get("dataset") or name, dataset_split=entry.get("split"),
                                      metric_type=metric, metric_name=metric, metric_value=value))  # fmt: skip
    return results


def evaluation_section(record: dict[str, Any]) -> str:
    """The card's evaluation table (empty when nothing was recorded)."""
    evaluations = record.get("evaluations") or {}
    if not evaluations:
        return ""
    lines = ["", "## Evaluation", "", "| Evaluation | Data | Split | Metric | Value |", "|---|---|---|---|---|"]
    for name, entry in evaluations.items():
        for metric, value in entry["metrics"].items():
            shown = f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
            lines.append(f"| {name} | {entry.get('dataset') or '-'} | {entry.get('split') or '-'} | {metric} | {shown} |")
    return "\n".join(lines) + "\n"


def _base_line(base: dict[str, Any]) -> str:
    named = f"[{base['hub_id']}](https://huggingface.co/{base['hub_id']})" if base["hub_id"] else f"`{base['model']}`"
    if base["gguf"]:
        named += f" (weights from the GGUF file `{base['gguf']}`, dequantized to floats before training)"
    return named if base["hub_id"] else named + " (a local model, relative to this folder)"


def _write_adapter(adapter: Path, record: dict[str, Any]) -> None:
    """peft's config names the base portably; our card replaces peft's blank template."""
    from symkd.teachers.embedded import by_origin

    base, cfg, name = record["base"], record["config"], record["config"]["out"]
    path = adapter / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base["model"]
    with atomic_write(path) as fh:
        json.dump(config, fh, indent=2, sort_keys=True)
    embedded = by_origin(base["hub_id"] or "")
    offline = OFFLINE.format(embedded=embedded, gguf=base["gguf"], name=name, base=base["model"]) if embedded and base["gguf"] else ""
    load, comment = (f"{name}/adapter", "") if base["hub_id"] else ("adapter", "  # from the student folder: the base is relative to it")
    text = ADAPTER_CARD.format(name=name, r=cfg["lora_r"], alpha=cfg["lora_alpha"], base=base["model"], offline=offline, load=load, comment=comment,
                               relative=" (relative to the student folder)" if not base["hub_id"] else "")  # fmt: skip
    _write_text(adapter / "README.md", _front_matter(card_metadata(name, record, adapter=True)) + text)


#: keys of transformers' and peft's small config files that may hold a path
_PATH_KEYS = ("name_or_path", "_file", "_path", "_dir")
_CONFIGS = ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
            "processor_config.json", "adapter/adapter_config.json")  # fmt: skip


def scrub_configs(out: Path, base: str) -> None:
    """Absolute paths in the saved configs' path keys become ``base`` (a name-or-path key) or the bare file name."""
    for relative in _CONFIGS:
        path = out / relative
        if not path.is_file():
            continue
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            continue
        changed = {k: (base if k.endswith("name_or_path") else Path(v).name) for k, v in config.items()
                   if k.endswith(_PATH_KEYS) and isinstance(v, str) and Path(v).expanduser().is_absolute()}  # fmt: skip
        if changed:
            with atomic_write(path) as fh:
                json.dump({**config, **changed}, fh, indent=2, sort_keys=True)


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as fh:
        fh.write(text)
