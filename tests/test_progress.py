"""One progress style (symkd.progress): tqdm.auto bars named by their stage, no blank lines."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from symkd.progress import bar
from tests.procs import ENV, ROOT, cmd, write_prompts


def screen(raw: str) -> list[str]:
    """The lines a terminal shows after printing ``raw`` (carriage returns, newlines, tqdm's cursor-up)."""
    lines, row, col, i = [""], 0, 0, 0
    while i < len(raw):
        if raw.startswith("\x1b[A", i):
            row, i = max(row - 1, 0), i + 3
            continue
        ch, i = raw[i], i + 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
    if lines[-1] == "" and row == len(lines) - 1:
        lines.pop()  # the cursor's line after the last newline
    return [line.rstrip() for line in lines]


def no_blank_lines(raw: str) -> list[str]:
    shown = screen(raw)
    assert shown and all(shown), f"blank line in {shown!r} (raw {raw!r})"
    return shown


def nested_stages(make_bar) -> None:
    """Two stages of three slow steps inside a rounds bar, as the strategies and agents loops run them."""
    with make_bar(total=2, desc="rounds", unit="round") as outer:
        for n in range(2):
            with make_bar(total=3, desc=f"round {n + 1}: attempts", unit="item") as inner:
                for _ in range(3):
                    time.sleep(0.25)
                    inner.update()
            outer.update()


def test_screen_sees_the_blank_lines_of_leave_false_bars(capsys):
    # the check the tests below rely on fails for the bars symkd used to make
    from tqdm import tqdm

    assert screen("a\n\r   \rb\n") == ["a", "b"]
    nested_stages(lambda **kw: tqdm(leave=False, delay=0.5, file=sys.stderr, **kw))
    with pytest.raises(AssertionError, match="blank line"):
        no_blank_lines(capsys.readouterr().err)


def test_generate_in_a_terminal_less_run_shows_its_bar_without_blank_lines(slow_openai, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", 8)
    args = ["generate", "-t", "openai:fake", "--base-url", slow_openai.base_url, "-p", str(prompts),
            "--db", str(tmp_path / "r.db"), "--concurrency", "1"]  # fmt: skip
    # bytes: text mode would turn tqdm's carriage returns into newlines
    proc = subprocess.run(cmd(*args), capture_output=True, timeout=120, env=ENV, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert out.startswith("run ") and "done 8" in out and "openai:fake" not in out  # results stay on stdout
    shown = no_blank_lines(err)
    assert len(shown) == 1 and shown[0].startswith("openai:fake: 100%") and "8/8" in shown[0], shown
    assert "failed=0" in shown[0]


def test_a_stage_names_its_bar_instead_of_a_loose_line(slow_openai, db_path, capsys):
    from symkd.session import TeacherSession
    from symkd.store.db import Store
    from symkd.teachers.messages import Request

    requests = [Request(id=f"r{i}", prompt=f"q {i}") for i in range(8)]
    options = {"base_url": slow_openai.base_url, "concurrency": 1}
    with Store(db_path) as store, TeacherSession("openai:fake", store, options) as session:
        session.ask(requests, kind="t", config={}, stage="inferences")
    err = capsys.readouterr().err
    shown = no_blank_lines(err)
    assert len(shown) == 1 and shown[0].startswith("[inferences] openai:fake: 100%"), shown
    assert "requests" not in err


def test_nested_stage_bars_leave_their_final_lines_and_no_blank_line(capsys):
    nested_stages(bar)
    shown = no_blank_lines(capsys.readouterr().err)
    assert [line.split(":")[0] for line in shown] == ["round 1", "round 2", "rounds"], shown
    assert "3/3" in shown[0] and "3/3" in shown[1] and "2/2" in shown[2]


def test_bars_are_tqdm_auto_on_stderr(monkeypatch):
    import tqdm.auto

    made = []

    class Recorded(tqdm.auto.tqdm):  # tqdm.auto: a widget under a notebook kernel, text elsewhere
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    b = bar(total=3, desc="stage", unit="item")
    b.close()
    assert isinstance(b, Recorded)
    assert made[0]["file"] is sys.stderr and made[0]["leave"] is True and made[0]["delay"] > 0


def test_quick_and_disabled_bars_print_nothing(capsys):
    for b in (bar(range(3), desc="off", unit="item", enabled=False), bar(range(3), desc="quick", unit="item")):
        assert list(b) == [0, 1, 2]
        b.close()
    with bar(total=2, desc="off", unit="item", enabled=False, delay=0) as b:
        b.update(2)
    assert capsys.readouterr() == ("", "")
    with bar(total=2, desc="shown", unit="item", delay=0) as b:  # the same bar, enabled, does print
        b.update(2)
    assert "shown: 100%" in capsys.readouterr().err


@pytest.mark.parametrize("enabled", [True, False])
def test_generation_bar_follows_progress(fake_openai, db_path, capsys, enabled, monkeypatch):
    import symkd
    import symkd.progress
    from symkd.teachers.messages import Request

    monkeypatch.setattr(symkd.progress, "DELAY", 0)  # show it even though the run is quick
    teacher = symkd.load_teacher("openai:fake", base_url=fake_openai.base_url)
    symkd.generate(teacher, [Request(id="a", prompt="x")], db_path, progress=enabled, stage="judge")
    err = capsys.readouterr().err
    assert ("[judge] openai:fake" in err) is enabled and (err == "") is not enabled
