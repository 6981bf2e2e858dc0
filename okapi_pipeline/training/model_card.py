"""What is saved with a trained model for its users: a model card and the Alpaca chat template.

The pipeline itself never applies a chat template (training and evaluation write the
Alpaca prompt as plain text); the template is saved so that `transformers chat`, vLLM's
chat API and TGI prompt the model as it was trained.
"""

import json
from pathlib import Path

# Renders okapi_pipeline.template.alpaca_prompt for one user message; the optional input
# is the message's "input" field. Only the last user message counts (the model was
# trained on single turns).
ALPACA_CHAT_TEMPLATE = (
    "{%- set message = messages | selectattr('role', 'equalto', 'user') | list | last -%}"
    "{%- set extra = (message['input'] if message['input'] is defined and message['input'] else '') | trim -%}"
    "{%- if extra -%}"
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{{ message['content'] }}\n\n### Input:\n{{ message['input'] }}\n\n### Response:\n"
    "{% else -%}"
    "Below is an instruction that describes a task. Write a response that "
    "appropriately completes the request.\n\n"
    "### Instruction:\n{{ message['content'] }}\n\n### Response:\n"
    "{% endif -%}"
)

STAGES = {
    "sft": "supervised fine-tuning on translated instructions",
    "reward_model": "reward model trained on ranked responses (scores a prompt and response)",
    "ppo": "RLHF: PPO from the SFT model against the reward model",
    "dpo": "DPO from the SFT model on the reward model's preference pairs",
}
# The splits (config `split`) a stage's model learnt from, itself or through the models it
# starts from (the SFT model; PPO's reward model).
STAGE_SPLITS = {"sft": ["sft"], "reward_model": ["sft", "rm"], "ppo": ["sft", "rm", "ppo"], "dpo": ["sft", "rm"]}
# The settings a card lists, those of the stage's that it has.
RECIPE_KEYS = (
    "finetuning",
    "epochs",
    "rounds",
    "learning_rate",
    "effective_batch_size",
    "rollout_batch_size",
    "trainable_top_blocks",
    "kl_coef",
    "beta",
)
OKAPI_URL = "https://github.com/nlp-uoregon/Okapi"
# The released data are files in that repository, not a hub dataset: the card's metadata
# has no `datasets` entry to name them by.


def add_chat_template(tokenizer) -> None:
    """Give the tokenizer the Alpaca prompt as its chat template (saved with it)."""
    tokenizer.chat_template = ALPACA_CHAT_TEMPLATE


def final_loss(summary: dict) -> float | None:
    """The last logged training loss (None: none was logged)."""
    return summary["loss"][-1]["loss"] if summary["loss"] else None


def model_card(
    *, stage: str, summary: dict, base_model: str, base_license: str | None, languages: list, data_sources: dict
):
    """The huggingface_hub ModelCard of a trained model.

    summary: its training_summary.json; data_sources: {split: "pipeline" | "okapi_release"}
    for the splits the stage learnt from; base_license: the base model's licence id (None: unknown).
    """
    from huggingface_hub import ModelCard, ModelCardData

    settings = summary["settings"]
    released = "okapi_release" in data_sources.values()
    layout = summary["batch_layout"]
    loss = final_loss(summary)
    recipe = [
        f"- stage: `{stage}` ({STAGES[stage]})",
        *(f"- {key}: {settings[key]}" for key in RECIPE_KEYS if key in settings),
    ]
    recipe.append(
        f"- batch layout: micro-batch {layout['micro_batch']} x accumulation {layout['accumulation']}"
        f" x {layout['processes']} process(es)"
    )
    data = [
        f"- split `{split}`: "
        + (
            f"the released Okapi data ({OKAPI_URL}, CC BY-NC 4.0)"
            if source == "okapi_release"
            else "made by this pipeline"
        )
        for split, source in data_sources.items()
    ]
    licences = [f"- base model `{base_model}`: {base_license or 'see the base model'}"]
    if released:
        licences.append("- the released Okapi data: CC BY-NC 4.0 (non-commercial use only)")
    facts = [
        f"- steps: {summary['steps']}",
        f"- final training loss: {loss if loss is None else round(loss, 4)}",
        f"- trainable parameters: {summary['trainable_parameters']} of {summary['total_parameters']}",
        f"- wall time: {summary['wall_time_s']} s on {summary['device']}",
    ]
    usage = (
        "The tokenizer carries the Alpaca prompt as its chat template; chat with "
        "`python -m okapi_pipeline.training.chat MODEL_DIR`."
        if stage != "reward_model"
        else "A sequence-classification model: its logit is the reward of an Alpaca prompt and response."
    )
    card_data = ModelCardData(
        base_model=base_model,
        language=list(languages),
        license=base_license,
        library_name="transformers",
        tags=["okapi", stage, "alpaca"],
    )
    text = "\n".join(
        [
            "---",
            card_data.to_yaml(),
            "---",
            "",
            f"# {base_model}: Okapi {stage} ({', '.join(languages)})",
            "",
            f"Trained from `{base_model}` with the recipe of Okapi (Lai et al., 2023; {OKAPI_URL}). {usage}",
            "",
            "## Data",
            *data,
            "",
            "## Recipe",
            *recipe,
            "",
            "## Training",
            *facts,
            "",
            "## Licences",
            *licences,
            "",
        ]
    )
    return ModelCard(text)


def base_license_of(base_dir) -> str | None:
    """The licence in the card of the model trained from (a hub model's README or this
    pipeline's own card), None when there is none."""
    from huggingface_hub import ModelCard

    readme = Path(base_dir) / "README.md"
    if not readme.is_file():
        return None
    return ModelCard.load(readme).data.license


def write_model_card(model_dir, *, stage: str, base_dir, base_model: str, languages: list, data_sources: dict) -> None:
    """README.md of a trained model, from its training_summary.json and the base model's card."""
    summary = json.loads((Path(model_dir) / "training_summary.json").read_text())
    card = model_card(
        stage=stage,
        summary=summary,
        base_model=base_model,
        base_license=base_license_of(base_dir),
        languages=languages,
        data_sources=data_sources,
    )
    card.save(Path(model_dir) / "README.md")
