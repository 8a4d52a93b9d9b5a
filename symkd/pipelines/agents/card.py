"""The model-card section of a student trained on agent trajectories (``symkd.cards`` entry point
``agent-trajectories``)."""

from __future__ import annotations

from symkd.students.card import CardSection

SECTION = CardSection("agent", """## Use as an agent
Trained on CodeAct trajectories: each turn is `Thought: ...` and one Python code block; the code's
printed output comes back as `Observation: ...` until the code calls `final_answer(x)`. The loss
covered the model's own turns only (system prompt, question and observations masked), and the
system prompt was the one without worked examples. Run it with the sandbox and tools:

    symkd agent eval --model {name_path} --data test.jsonl [--votes 8] [--tools search --corpus run.db]
""")
