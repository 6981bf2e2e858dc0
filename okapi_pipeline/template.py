"""The Alpaca prompt template, in English for every language (as in Okapi)."""

WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
WITHOUT_INPUT = (
    "Below is an instruction that describes a task. Write a response that "
    "appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The prompt part (up to and including '### Response:\\n')."""
    if input and input.strip():
        return WITH_INPUT.format(instruction=instruction, input=input)
    return WITHOUT_INPUT.format(instruction=instruction)
