"""What a user gets with a trained model: the card, the chat template, the chat command, progress."""

import io
import json
import logging
from types import SimpleNamespace

import pytest
import yaml

from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training.model_card import base_license_of, model_card, write_model_card
from okapi_pipeline.training.progress import ProgressLog, duration
from okapi_pipeline.training.trainer import save_trained_model

SUMMARY = {
    "stage": "sft",
    "steps": 42,
    "loss": [{"step": 1, "loss": 2.5}, {"step": 42, "loss": 1.23456}],
    "wall_time_s": 12.5,
    "trainable_parameters": 100,
    "total_parameters": 200,
    "device": "cpu",
    "settings": {"epochs": 3, "learning_rate": 1e-5, "effective_batch_size": 16, "finetuning": "full"},
    "batch_layout": {"micro_batch": 2, "accumulation": 1, "processes": 8},
}


def card_parts(card) -> tuple[dict, str]:
    _, front, body = str(card).split("---\n", 2)
    return yaml.safe_load(front), body


def test_the_card_says_base_model_languages_recipe_training_and_licences():
    card = model_card(
        stage="sft",
        summary=SUMMARY,
        base_model="bigscience/bloom-7b1",
        base_license="bigscience-bloom-rail-1.0",
        languages=["vi"],
        data_sources={"sft": "pipeline"},
    )
    metadata, body = card_parts(card)
    assert metadata["base_model"] == "bigscience/bloom-7b1"
    assert metadata["language"] == ["vi"]
    assert metadata["license"] == "bigscience-bloom-rail-1.0"
    assert "okapi" in metadata["tags"] and "sft" in metadata["tags"]
    for fact in ("epochs: 3", "learning_rate: 1e-05", "effective_batch_size: 16", "steps: 42", "loss: 1.2346"):
        assert fact in body
    assert "micro-batch 2 x accumulation 1 x 8 process(es)" in body
    assert "made by this pipeline" in body and "CC BY-NC" not in body


def test_a_model_from_the_released_data_carries_its_non_commercial_licence():
    card = model_card(
        stage="ppo",
        summary={**SUMMARY, "stage": "ppo", "loss": []},
        base_model="huggyllama/llama-7b",
        base_license=None,
        languages=["vi", "fr"],
        data_sources={"sft": "okapi_release", "rm": "pipeline", "ppo": "pipeline"},
    )
    metadata, body = card_parts(card)
    assert metadata["language"] == ["vi", "fr"]
    assert "Okapi data (https://github.com/nlp-uoregon/Okapi, CC BY-NC 4.0)" in body
    assert "released Okapi data: CC BY-NC 4.0 (non-commercial use only)" in body
    assert "final training loss: None" in body
    assert "see the base model" in body


def test_a_card_passes_its_licence_on_to_the_models_trained_from_it(tmp_path):
    sft, reward_model_dir = tmp_path / "sft", tmp_path / "rm"
    for directory in (sft, reward_model_dir):
        directory.mkdir()
        (directory / "training_summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a hub model\n")
    facts = {"base_model": "Qwen/Qwen2.5-7B", "languages": ["vi"], "data_sources": {"sft": "pipeline"}}
    write_model_card(sft, stage="sft", base_dir=tmp_path / "base", **facts)
    write_model_card(reward_model_dir, stage="reward_model", base_dir=sft, **facts)
    assert base_license_of(reward_model_dir) == "apache-2.0"
    assert base_license_of(tmp_path) is None  # no card: unknown


def save_like_a_trainer(model, tokenizer, out_dir):
    accelerator = SimpleNamespace(
        unwrap_model=lambda model: model, num_processes=1, is_main_process=True, wait_for_everyone=lambda: None
    )
    save_trained_model(SimpleNamespace(accelerator=accelerator, model=model), out_dir, tokenizer)


@pytest.fixture(scope="module")
def saved_model_dir(tiny_llama_dir, tmp_path_factory):
    import torch

    from okapi_pipeline.training.modeling import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(tiny_llama_dir)
    out = tmp_path_factory.mktemp("saved")
    save_like_a_trainer(load_causal_lm(tiny_llama_dir, tokenizer, torch.float32), tokenizer, out)
    return out


@pytest.mark.parametrize("extra", ["", "Xin chào, thế giới."])
def test_the_saved_chat_template_renders_the_alpaca_prompt(saved_model_dir, extra):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(saved_model_dir)
    message = {"role": "user", "content": "Translate into English.", **({"input": extra} if extra else {})}
    rendered = tokenizer.apply_chat_template([message], tokenize=False, add_generation_prompt=True)
    assert rendered == alpaca_prompt("Translate into English.", extra)


def test_chat_prompt_answers_once_and_exits(saved_model_dir):
    from okapi_pipeline.training.chat import main

    out = io.StringIO()
    main([str(saved_model_dir), "--prompt", "Name a colour.", "--seed", "1"], stdout=out)
    again = io.StringIO()
    main([str(saved_model_dir), "--prompt", "Name a colour.", "--seed", "1"], stdout=again)
    assert out.getvalue().endswith("\n") and out.getvalue() == again.getvalue()  # seeded sampling repeats


def test_chat_answers_one_line_a_line_until_the_input_ends(saved_model_dir):
    from okapi_pipeline.training.chat import main

    out = io.StringIO()
    main([str(saved_model_dir), "--seed", "1"], stdin=io.StringIO("Name a colour.\n\nName a fruit.\n"), stdout=out)
    assert len(out.getvalue().splitlines()) >= 2  # one answer each (an answer may span lines)


def test_chat_refuses_a_folder_without_a_model(tmp_path, capsys):
    from okapi_pipeline.training.chat import main

    with pytest.raises(SystemExit):
        main([str(tmp_path), "--prompt", "hi"])
    assert "not a saved model folder" in capsys.readouterr().err


def test_progress_logs_step_elapsed_and_eta_every_few_percent(caplog):
    now = [0.0]
    progress = ProgressLog(every_percent=25, clock=lambda: now[0])
    state = SimpleNamespace(global_step=20, max_steps=100)  # resumed at step 20
    progress.on_train_begin(None, state, None)
    with caplog.at_level(logging.INFO, logger="okapi_pipeline.training.progress"):
        for step in range(21, 101):
            now[0] += 2.0  # two seconds a step
            state.global_step = step
            progress.on_step_end(None, state, None)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "step 45/100 (45%), elapsed 0:00:50, ETA 0:01:50"
    assert lines[-1] == "step 100/100 (100%), elapsed 0:02:40, ETA 0:00:00"
    # every 25% from where the run resumed, and the last step
    assert [line.split(" (")[0] for line in lines] == ["step 45/100", "step 70/100", "step 95/100", "step 100/100"]
    assert duration(3725) == "1:02:05"
