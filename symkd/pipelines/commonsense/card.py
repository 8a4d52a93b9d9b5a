"""The model-card section of a student trained on commonsense triples (COMET-style prompts).

Registered in the ``symkd.cards`` entry-point group for the data kinds this pipeline makes
(``db``, ``tsv``, ``triples``, ``jsonl`` rows, and ``commonsense``).
"""

from __future__ import annotations

from symkd.students.card import CardSection

SECTION = CardSection("commonsense", """## Input format
Prompt `{{head}} {{relation phrase}} [GEN]`, completion ` {{tail}}` and EOS, e.g.

    {example_prompt}{example_completion}

Generate greedily from the prompt; the text up to EOS is the tail. `symkd commonsense eval
--model {name_path}` scores it with the COMET-ATOMIC2020 metrics.
""")
