"""lm-eval tasks under the paper's protocol: prompts, shots, splits, and the score files."""

import json

import pytest
import yaml

from okapi_pipeline.evaluation.benchmarks import prepare_benchmark
from okapi_pipeline.evaluation.evaluate import evaluate_model
from okapi_pipeline.evaluation.lm_eval_tasks import (
    arc_doc,
    hellaswag_clean,
    hellaswag_doc,
    mmlu_doc,
    task_name,
    write_task,
)
from okapi_pipeline.jsonl import read_jsonl
from tests.test_benchmarks import RELEASED, SHOTS, local_source, write_released_layout

PROTOCOL = {
    "backend": "hf",
    "batch_size": 8,
    "seed": 1234,
    "limit": None,
    "add_bos_token": None,
    "arc": {"split": "test", "fewshot_split": "train", "num_fewshot": SHOTS, "metric": "acc_norm"},
    "hellaswag": {"split": "validation", "fewshot_split": None, "num_fewshot": 0, "metric": "acc_norm"},
    # mlmm-evaluation's shots come from the dev file (its loader's "validation" split).
    "mmlu": {"split": "test", "fewshot_split": "dev", "num_fewshot": SHOTS, "metric": "acc"},
}
SPLITS = {"arc": ["test", "train"], "hellaswag": ["validation"], "mmlu": ["test", "dev"]}


def prepare_all(root, out_dir) -> dict:
    write_released_layout(root)
    files = {}
    for bench, splits in SPLITS.items():
        files[bench] = out_dir / bench / "vi.json"
        prepare_benchmark(bench, "vi", local_source(root, bench, "vi", splits), splits, files[bench])
    return files


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_llama_dir):
    """One lm-eval call for the three benchmarks of Vietnamese, as the rule makes it."""
    base = tmp_path_factory.mktemp("evaluate")
    files = prepare_all(base / "okapi", base / "benchmark_data")
    out_paths = {bench: base / "scores" / f"{bench}.json" for bench in files}
    evaluate_model(tiny_llama_dir, files, PROTOCOL, out_paths, base / "work", threads=2)
    scores = {bench: json.loads(path.read_text(encoding="utf-8")) for bench, path in out_paths.items()}
    samples = {bench: read_jsonl(base / "work" / task_name(bench, "vi") / "samples.jsonl") for bench in files}
    return scores, samples


def shots_and_question(prompt: str) -> tuple[list[str], str]:
    blocks = prompt.split("\n\n")
    return blocks[:-1], blocks[-1]


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


# ---- scored with lm-eval and a tiny model ------------------------------------------------


def test_arc_scores_every_test_item_with_25_shots_from_train(scored):
    scores, samples = scored
    arc = scores["arc"]
    test, train = RELEASED[("arc", "test")], RELEASED[("arc", "train")]
    assert (arc["n_shot"], arc["n_samples"], arc["task_config"]["num_fewshot"]) == (SHOTS, len(test), SHOTS)
    assert [s["id"] for s in samples["arc"]] == [r["id"] for r in test]
    train_blocks = {arc_doc(r)["query"] + " " + arc_doc(r)["choices"][arc_doc(r)["gold"]] for r in train}
    for sample, record in zip(samples["arc"], test):
        shots, question = shots_and_question(sample["prompt"])
        assert len(shots) == SHOTS and set(shots) <= train_blocks
        assert question == f"Question: {record['instruction']}\nAnswer:"
        assert sample["continuations"] == [" " + text for text in arc_doc(record)["choices"]]
    assert arc["example_prompts"][0]["prompt"] == samples["arc"][0]["prompt"]


def test_mmlu_prompts_have_the_choices_block_and_full_text_choices_and_shots_from_dev(scored):
    scores, samples = scored
    assert (scores["mmlu"]["n_shot"], scores["mmlu"]["n_samples"]) == (SHOTS, len(RELEASED[("mmlu", "test")]))
    dev_queries = {mmlu_doc(r)["query"] for r in RELEASED[("mmlu", "dev")]}
    val_queries = {mmlu_doc(r)["query"] for r in RELEASED[("mmlu", "val")]}
    assert not dev_queries & val_queries
    for sample, record in zip(samples["mmlu"], RELEASED[("mmlu", "test")]):
        shots, question = shots_and_question(sample["prompt"])
        assert len(shots) == SHOTS
        assert all(shot.endswith("\nAnswer: Thành phố Paris") for shot in shots)
        assert {shot.removesuffix(" Thành phố Paris") for shot in shots} <= dev_queries
        assert question == mmlu_doc(record)["query"]
        assert sample["continuations"] == [
            " Thành phố Luân Đôn",
            " Thành phố Paris",
            " Thành phố Berlin",
            " Thành phố Rôma",
        ]


def test_hellaswag_is_zero_shot_on_the_cleaned_context(scored):
    scores, samples = scored
    assert (scores["hellaswag"]["n_shot"], scores["hellaswag"]["n_samples"]) == (0, 4)
    for sample, record in zip(samples["hellaswag"], RELEASED[("hellaswag", "validation")]):
        assert sample["prompt"] == hellaswag_doc(record)["query"]
        assert sample["continuations"][0] == " và đổ nước vừa đủ."


def test_score_files_hold_metrics_and_what_produced_them(scored):
    scores, _ = scored
    for bench, score in scores.items():
        metrics = score["metrics"]
        assert set(metrics) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
        assert all(0.0 <= metrics[name] <= 1.0 for name in ("acc", "acc_norm"))
        assert (score["benchmark"], score["language"]) == (bench, "vi")
        assert score["protocol"] == PROTOCOL[bench]
        assert (score["run"]["device"], score["run"]["dtype"]) == ("cpu", "float32")
        assert score["task_config"]["dataset_path"] == "json"
        assert len(score["example_prompts"]) == 3


def test_a_killed_evaluation_answers_only_the_rest_and_scores_the_same(scored, tiny_llama_dir, tmp_path, monkeypatch):
    """The first run dies after 10 answered requests; the second asks the model only for the rest."""
    from lm_eval.api.model import CacheHook
    from lm_eval.models.huggingface import HFLM

    files = prepare_all(tmp_path / "okapi", tmp_path / "benchmark_data")
    out_paths = {bench: tmp_path / "scores" / f"{bench}.json" for bench in files}
    store = CacheHook.add_partial
    answered = []

    def killed_after_10(self, attr, request, result):
        store(self, attr, request, result)
        self.dbdict.commit()
        answered.append(request)
        if len(answered) == 10:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(CacheHook, "add_partial", killed_after_10)
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(tiny_llama_dir, files, PROTOCOL, out_paths, tmp_path / "work", threads=2)
    assert not any(path.exists() for path in out_paths.values())
    monkeypatch.setattr(CacheHook, "add_partial", store)

    asked = []
    loglikelihood = HFLM.loglikelihood
    monkeypatch.setattr(
        HFLM,
        "loglikelihood",
        lambda self, requests, **kw: asked.extend(requests) or loglikelihood(self, requests, **kw),
    )
    evaluate_model(tiny_llama_dir, files, PROTOCOL, out_paths, tmp_path / "work", threads=2)
    requests = sum(len(sample["continuations"]) for samples in scored[1].values() for sample in samples)
    assert len(asked) == requests - 10  # one request per choice of each item
    resumed = {bench: json.loads(path.read_text(encoding="utf-8")) for bench, path in out_paths.items()}
    for bench, score in scored[0].items():
        assert resumed[bench]["metrics"] == score["metrics"]
    assert not (tmp_path / "work" / "lm_eval_cache").exists()


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
