"""lm-eval tasks under the paper's protocol: prompts, task files, model arguments, the BOS token."""

import json

import pytest
import yaml

from okapi_pipeline.evaluation.evaluate import evaluate_model
from okapi_pipeline.evaluation.lm_eval_tasks import arc_doc, hellaswag_clean, hellaswag_doc, mmlu_doc, write_task
from okapi_pipeline.jsonl import read_jsonl
from tests.support.benchmarks import PROTOCOL, RELEASED, SHOTS, prepare_all

# ---- prompt formats (no model) ---------------------------------------------------------


def test_arc_prompt_is_question_answer_with_option_texts_as_choices():
    doc = arc_doc(RELEASED[("arc", "test")][2])
    assert doc["query"] == "Câu hỏi test số 2: 4 cộng 5 bằng bao nhiêu?".join(["Question: ", "\nAnswer:"])
    assert doc["choices"] == ["9", "10", "11", "12", "13"] and doc["gold"] == 0


def test_mmlu_prompt_lists_the_choices_and_scores_their_full_text():
    doc = mmlu_doc(RELEASED[("mmlu", "test")][0])
    assert doc["query"] == (
        "Question: Câu hỏi test số 0: Thủ đô của nước Pháp là thành phố nào?\nChoices:\n"
        "A. Thành phố Luân Đôn\nB. Thành phố Paris\nC. Thành phố Berlin\nD. Thành phố Rôma\nAnswer:"
    )
    assert doc["choices"][doc["gold"]] == "Thành phố Paris"


def test_hellaswag_context_is_built_and_cleaned_like_the_harness():
    doc = hellaswag_doc(RELEASED[("hellaswag", "validation")][0])
    # activity_label + ": " + ctx_a + " " + ctx_b.capitalize(); " [title]" -> ". ",
    # other bracket tags dropped, double spaces made single.
    assert doc["query"] == "Nấu ăn: Cách nấu cơm. Vo gạo thật sạch. Cho gạo vào nồi"
    assert doc["choices"][0] == "và đổ nước vừa đủ." and doc["gold"] == 0
    assert hellaswag_clean("  a [title] b [step] c  ") == "a. b c"


def test_task_yaml_carries_its_own_shots_splits_and_absolute_data_files(tmp_path, monkeypatch):
    files = prepare_all(tmp_path / "okapi", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    name, config = write_task("arc", files["arc"], PROTOCOL["arc"], "work")
    assert yaml.safe_load((tmp_path / "work" / name / f"{name}.yaml").read_text(encoding="utf-8")) == config
    assert (config["num_fewshot"], config["fewshot_split"], config["test_split"]) == (SHOTS, "train", "test")
    for split, path in config["dataset_kwargs"]["data_files"].items():
        assert path.startswith(str(tmp_path)) and len(read_jsonl(path)) == len(RELEASED[("arc", split)])


def test_too_few_shots_in_the_shot_split_is_an_error(tmp_path):
    files = prepare_all(tmp_path / "okapi", tmp_path / "data")
    with pytest.raises(ValueError, match="31 shots asked but split 'train' has only 30 records"):
        write_task("arc", files["arc"], dict(PROTOCOL["arc"], num_fewshot=31), tmp_path / "work")


# ---- model backends ---------------------------------------------------------------------


def test_model_arguments_for_hf_and_vllm():
    from okapi_pipeline.evaluation.evaluate import model_arguments

    assert model_arguments("hf", "/m/sft", "bfloat16", PROTOCOL) == "pretrained=/m/sft,dtype=bfloat16"
    vllm = dict(
        item.split("=", 1)
        for item in model_arguments("vllm", "/m/sft", "bfloat16", {**PROTOCOL, "gpu_memory_utilization": 0.8}).split(
            ","
        )
    )
    assert vllm == {
        "pretrained": "/m/sft",
        "dtype": "bfloat16",
        "tensor_parallel_size": "1",
        "gpu_memory_utilization": "0.8",
        "seed": "1234",
    }
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        model_arguments("onnx", "/m/sft", "float32", PROTOCOL)
    no_bos = {**PROTOCOL, "add_bos_token": False}
    assert model_arguments("hf", "/m/sft", "float32", no_bos) == "pretrained=/m/sft,dtype=float32,add_bos_token=False"
    vllm_no_bos = model_arguments("vllm", "/m/sft", "float32", {**no_bos, "gpu_memory_utilization": 0.8})
    assert vllm_no_bos.endswith(",add_bos_token=False")


def lm_eval_model(model_dir, add_bos_token):
    """lm-eval's hf model as evaluate_model creates it, from the same model_args."""
    from lm_eval.api.registry import get_model

    from okapi_pipeline.evaluation.evaluate import model_arguments

    arguments = model_arguments("hf", model_dir, "float32", {**PROTOCOL, "add_bos_token": add_bos_token})
    return get_model("hf").create_from_arg_string(arguments, {"device": "cpu", "batch_size": 1})


PROMPT = "Question: What is the capital of France?\nAnswer:"


def test_the_paper_protocol_puts_no_bos_before_a_llama_prompt(tiny_llama_dir):
    """mlmm-evaluation encoded prompts without special tokens; lm-eval adds LLaMA's <s> unless told."""
    default, paper = lm_eval_model(tiny_llama_dir, None), lm_eval_model(tiny_llama_dir, False)
    bos = paper.tokenizer.bos_token_id
    assert default.tok_encode(PROMPT)[0] == bos  # the tiny Llama's tokenizer adds <s>, as LLaMA's does
    assert paper.tok_encode(PROMPT)[0] != bos
    assert paper.tok_encode(PROMPT) == default.tok_encode(PROMPT)[1:]
    # The batched encoding (generation) too.
    assert paper.tok_batch_encode([PROMPT])[0][0, 0].item() != bos


def test_without_bos_a_bloom_prompt_is_encoded_as_before(tiny_bloom_dir, tmp_path):
    """BLOOM's tokenizer adds no BOS: the paper protocol changes nothing for it."""
    import shutil

    bloom = tmp_path / "bloom"
    shutil.copytree(tiny_bloom_dir, bloom)
    tokenizer = json.loads((bloom / "tokenizer.json").read_text())
    tokenizer["post_processor"] = None  # as bigscience/bloom-7b1's: no BOS added
    (bloom / "tokenizer.json").write_text(json.dumps(tokenizer))
    default, paper = lm_eval_model(bloom, None), lm_eval_model(bloom, False)
    assert paper.tok_encode(PROMPT) == default.tok_encode(PROMPT)
    assert default.tok_encode(PROMPT)[0] != default.tokenizer.bos_token_id


def test_vllm_chosen_but_not_installed_fails_in_one_line(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a)
    )
    with pytest.raises(RuntimeError) as error:
        evaluate_model(tmp_path / "model", {}, {**PROTOCOL, "backend": "vllm"}, {}, tmp_path / "work")
    assert "\n" not in str(error.value)
    assert str(error.value).startswith("evaluation.backend is vllm but the vllm package is not installed")
