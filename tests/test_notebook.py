"""The README's Python API examples run in a real Jupyter kernel (a running event loop).

The notebook runs through nbclient + ipykernel; the loopback OpenAI server stands in for the
teacher so it needs no model. A sync call that used ``asyncio.run`` fails there with "cannot
be called from a running event loop" and leaves a coroutine never awaited.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "prompts" / "examples" / "quickstart.jsonl"


def _cells(base_url: str) -> list[str]:
    """The README's Python API section, with the loopback server as the teacher."""
    spec, url = "openai:fake", base_url
    return [
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})  # this checkout's symkd, as pytest imports it\n"
        "import asyncio, json, warnings\nwarnings.simplefilter('always')\nimport symkd\n"
        "assert asyncio.get_event_loop().is_running()  # the kernel's loop, as in Jupyter",
        f"requests = symkd.read_requests({str(QUICKSTART)!r}, max_tokens=32)\n"
        f"result = symkd.generate({spec!r}, requests, 'demo.db', base_url={url!r}, progress=False)\n"
        "rows = [(item_id, response.ok, response.completions[0].text) for item_id, request, response in result]",
        "tpl = symkd.get_template('quickstart/explain')\n"
        "req = tpl.request('wind', {'concept': 'wind'}, temperature=0.2)\n"
        "chat = symkd.Request(id='x', messages=[symkd.Message(role='user', content='Hi')],\n"
        "                     params=symkd.GenerationParams(n=3, max_tokens=16, seed=1))",
        f"teacher = symkd.load_teacher({spec!r}, base_url={url!r}, concurrency=64, rpm=500)\n"
        "mixed = symkd.generate(teacher, [req, chat], 'demo.db', progress=False)\n"
        "runs = symkd.list_runs('demo.db')\n"
        "responses = teacher.generate([chat])\n"
        "again = teacher.generate([chat, req])  # a second call on the same teacher",
        f"with symkd.TeacherSession({spec!r}, symkd.open_store('demo.db'), {{'base_url': {url!r}}}, progress=False) as s:\n"
        "    answers = s.ask([req], kind='my-stage', config={}, stage='explain')\n"
        "asked = [(i, r.ok) for i, _, r in answers]",
        "print(json.dumps({'rows': rows, 'mixed': [mixed.total, mixed.failed], 'runs': runs,\n"
        "    'responses': [[c.text for c in r.completions] for r in responses],\n"
        "    'again': [r.ok for r in again], 'asked': asked, 'stages': s.stages}))",
    ]


def test_teacher_generate_inside_a_running_loop_without_jupyter(fake_openai):
    import asyncio
    import warnings

    import symkd

    teacher = symkd.load_teacher("openai:fake", base_url=fake_openai.base_url)
    chat = symkd.Request(id="x", messages=[symkd.Message(role="user", content="Hi")])

    async def in_a_loop() -> list:
        return teacher.generate([chat]) + teacher.generate([chat])

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited"
        got = asyncio.run(in_a_loop())
    assert [r.ok for r in got] == [True, True] and got[0].completions[0].text == got[1].completions[0].text
    assert [r.ok for r in teacher.generate([chat])] == [True]  # and again outside any loop


def _run_notebook(cells: list[str], folder: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute()
    return nb


def _streams(nb, name: str) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.outputs if o.get("name") == name)


def test_readme_python_api_runs_in_a_jupyter_kernel(fake_openai, tmp_path):
    nb = _run_notebook(_cells(fake_openai.base_url), tmp_path)
    stderr = _streams(nb, "stderr")
    assert "never awaited" not in stderr and "running event loop" not in stderr, stderr
    got = json.loads(_streams(nb, "stdout").strip().splitlines()[-1])
    ids = [json.loads(line)["id"] for line in QUICKSTART.read_text().splitlines() if line.strip()]
    assert [r[0] for r in got["rows"]] == ids and all(r[1] for r in got["rows"])  # in request order, all ok
    assert all(r[2].startswith("echo") for r in got["rows"])  # the loopback server's answers
    assert got["mixed"] == [2, 0]
    assert len(got["runs"]) == 2 and all(r["failed"] == 0 and r["pending"] == 0 for r in got["runs"])
    assert len(got["responses"]) == 1 and len(got["responses"][0]) == 3  # n=3
    assert got["again"] == [True, True]
    assert got["asked"] == [["wind", True]]
    assert got["stages"]["explain"]["cached"] == 1  # answered from demo.db: the same store across calls
    assert (tmp_path / "demo.db").exists()
