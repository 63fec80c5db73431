"""Prompt formats: DAPO's "Answer:" template (what FIPO trains with), step-by-step \\boxed{}, raw.

It is the wording of every prompt in DAPO-Math-17k (reference FIPO.md §3). verl's rule
verifier for that data (``verl.utils.reward_score.math_dapo``) reads the last ``Answer:``
line of a response, which is what the template asks the model to write.
"""

from __future__ import annotations

DAPO_PROMPT_TEMPLATE = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
    "{problem}\n\n"
    'Remember to put your answer on its own line after "Answer:".'
)


def dapo_prompt(problem: str) -> str:
    """The user message for ``problem``, worded exactly as DAPO-Math-17k words its prompts."""
    # replace, not str.format: problems are LaTeX and full of braces.
    return DAPO_PROMPT_TEMPLATE.replace("{problem}", problem)


BOXED_PROMPT_TEMPLATE = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{}."

#: ``fipo eval --prompt-format``: the user message built from a problem.
PROMPT_FORMATS = {
    "dapo": dapo_prompt,
    "boxed": lambda problem: BOXED_PROMPT_TEMPLATE.replace("{problem}", problem),
    "raw": lambda problem: problem,
}
