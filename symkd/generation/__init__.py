"""Cached, resumable batch generation: the cache in front of any teacher.

``generate(teacher, requests, db)`` records the run, answers what the cache already has,
sends only the rest, and writes every answer as it arrives. Killing the process at any
moment and running the same call again finishes the job with nothing lost and nothing
duplicated: keys are content hashes, rows are upserted, and the run is found again by the
hash of its configuration. Two processes running the same job at once split it: a key is
sent only by the process that claimed it (:mod:`symkd.store.claims`), and each reports what
the other answered as cached. Ctrl-C or SIGTERM flush what arrived and record the run as
``interrupted``; a heartbeat lets ``symkd runs`` tell a killed run from a live one.
"""

from symkd.generation.records import GenerationResult, RunSummary, run_results
from symkd.generation.run import agenerate, generate

__all__ = ["GenerationResult", "RunSummary", "agenerate", "generate", "run_results"]
