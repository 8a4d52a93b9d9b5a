"""GSM8K scoring: numeric matching with round-off, answer extraction from CoT completions."""

from __future__ import annotations

import pytest

from symkd.pipelines.agents.gsm8k import answers_match, extract_answer


@pytest.mark.parametrize("predicted,reference,ok", [
    ("0.30000000000000004", "0.3", True), (".5", "0.5", True), ("5e-1", "0.5", True), ("1.2E+03", "1200", True),
    ("1e3", "1,000", True), ("2.0000001", "2", True), ("2.001", "2", False), ("1e-05", "0.00001", True),
    ("-7.5", "-7.5", True), ("18", "-18", False), ("0", "0", True), ("0.0001", "0", False),
])  # fmt: skip
def test_numbers_match_up_to_round_off(predicted, reference, ok):
    assert answers_match(predicted, reference) is ok


def test_cot_answer_is_the_number_right_after_the_marker():
    assert extract_answer("3 + 4 = 7\n#### 18 ... 7") == "18"
    assert extract_answer("#### $1,200.50 dollars") == "1200.50"
    assert extract_answer("so\n####\n12") is None  # the marker with no number after it on its line
    assert extract_answer("first #### 4\nthen #### 9") == "4"


def test_truncated_completion_is_not_an_answer():
    looping = "She has 3 apples. She has 3 apples. She has 3 apples. She has"
    assert extract_answer(looping, finished=False) is None
    assert extract_answer(looping, finished=True) == "3"
    assert extract_answer("2 + 2 = 4\n#### 4\nShe has 3 apples. She", finished=False) == "4"
