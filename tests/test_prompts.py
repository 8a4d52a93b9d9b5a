"""Prompt templates: loading, validation, rendering, versions, requests files."""

from __future__ import annotations

import json

import pytest

import symkd
from symkd.errors import UserError
from symkd.prompts import get_template, list_templates, load_file
from symkd.requests_file import read_requests


def test_bundled_templates_load_and_render():
    templates = list_templates()
    assert any(t.id == "quickstart/explain" for t in templates)
    tpl = get_template("quickstart/explain")
    messages = tpl.render({"concept": "snow"})
    assert messages[0].role == "system"
    assert 'Explain "snow" to a child.' in messages[-1].content
    assert "Rain is water" in messages[-1].content  # few-shot examples are rendered
    req = tpl.request("x", {"concept": "snow"}, temperature=0.1)
    assert req.template_id == "quickstart/explain" and req.template_version == "1"
    assert req.params.temperature == 0.1 and req.params.max_tokens == 40  # template default kept


def test_missing_variable_is_a_clear_error():
    with pytest.raises(UserError, match=r"quickstart/explain@1: missing variable\(s\) concept"):
        get_template("quickstart/explain").render({})


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_invalid_templates_name_the_file_and_field(tmp_path):
    undeclared = _write(tmp_path, "a.yaml", "id: t\nversion: 1\nvariables: []\nprompt: 'Hi {{ who }}'\n")
    with pytest.raises(UserError, match=r"a.yaml: field template: .*undeclared variable\(s\): who"):
        load_file(undeclared)
    both = _write(tmp_path, "b.yaml", "id: t\nprompt: x\nmessages: [{role: user, content: y}]\n")
    with pytest.raises(UserError, match="b.yaml: .*exactly one of"):
        load_file(both)
    bad_yaml = _write(tmp_path, "c.yaml", "id: [unclosed\n")
    with pytest.raises(UserError, match=r"c.yaml: line \d+ invalid YAML"):
        load_file(bad_yaml)
    bad_param = _write(tmp_path, "d.yaml", "id: t\nprompt: x\nparams: {temperature: 9}\n")
    with pytest.raises(UserError, match="d.yaml"):
        load_file(bad_param)


def test_versions_pick_latest_or_exact(tmp_path):
    _write(tmp_path, "v1.yaml", "id: demo/t\nversion: '1'\nprompt: one\n")
    _write(tmp_path, "v2.yaml", "id: demo/t\nversion: '2'\nprompt: two\n")
    _write(tmp_path, "v10.yaml", "id: demo/t\nversion: '10'\nprompt: ten\n")
    assert get_template("demo/t", root=tmp_path).prompt == "ten"
    assert get_template("demo/t@2", root=tmp_path).prompt == "two"
    with pytest.raises(UserError, match="has no version '3'"):
        get_template("demo/t@3", root=tmp_path)
    with pytest.raises(UserError, match="unknown template"):
        get_template("nope/t", root=tmp_path)


def test_requests_file_mixes_kinds_and_layers_params(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [
        {"id": "a", "messages": [{"role": "user", "content": "hi"}]},
        {"id": "b", "prompt": "raw", "params": {"max_tokens": 5}},
        {"id": "c", "template": "quickstart/explain@1", "variables": {"concept": "ice"}},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    reqs = read_requests(path, max_tokens=20, temperature=0.3)
    assert [r.kind for r in reqs] == ["chat", "completion", "chat"]
    assert reqs[0].params.max_tokens == 20 and reqs[1].params.max_tokens == 5
    assert reqs[2].params.max_tokens == 20 and reqs[2].params.temperature == 0.3
    assert reqs[2].template_id == "quickstart/explain"


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": \n', r"p.jsonl:2: invalid JSON"),
        ('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', r"p.jsonl:2: field id: 'a' already used on line 1"),
        ('{"prompt": "x"}\n', r"p.jsonl:1: field id: missing"),
        ('{"id": "a"}\n', r"p.jsonl:1: field .*exactly one of"),
        ('{"id": "a", "prompt": "x", "params": {"temperature": -1}}\n', r"p.jsonl:1: field params.temperature"),
        ('{"id": "a", "messages": [{"role": "robot", "content": "x"}]}\n', r"p.jsonl:1: field messages.0.role"),
        ('{"id": "a", "template": "quickstart/explain"}\n', r"p.jsonl:1: template quickstart/explain@1: missing"),
        ('{"id": "a", "prmpt": "x"}\n', r"p.jsonl:1: unknown field 'prmpt'"),
        ("[1, 2]\n", r"p.jsonl:1: expected a JSON object"),
        ("\n\n", r"p.jsonl: no requests"),
    ],
)
def test_bad_requests_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        read_requests(path)
    assert "\n" not in str(info.value)


def test_non_utf8_and_missing_files(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": "caf\xe9"}\n')
    with pytest.raises(UserError, match="p.jsonl:1: not UTF-8"):
        read_requests(path)
    with pytest.raises(UserError, match="no such file"):
        read_requests(tmp_path / "missing.jsonl")


def test_api_exports():
    for name in ("generate", "read_requests", "run_results", "list_runs", "load_teacher", "open_store"):
        assert callable(getattr(symkd, name))
