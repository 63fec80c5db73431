"""The prompt formats: DAPO-Math-17k's wording, boxed and raw."""

from __future__ import annotations

from fipo_cli.data.prompts import PROMPT_FORMATS, dapo_prompt


def test_prompt_formats():
    assert PROMPT_FORMATS["dapo"]("P").endswith('Remember to put your answer on its own line after "Answer:".')
    assert PROMPT_FORMATS["boxed"]("P") == "P\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert PROMPT_FORMATS["raw"]("P") == "P"


DAPO_WORDING = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
    "What is $\\frac{1}{2} + {x}$?\n\n"
    'Remember to put your answer on its own line after "Answer:".'
)


def test_dapo_prompt_is_dapo_math_17k_wording_and_keeps_latex_braces():
    assert dapo_prompt("What is $\\frac{1}{2} + {x}$?") == DAPO_WORDING
