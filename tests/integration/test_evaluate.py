"""lm-eval scoring of the tiny Llama under the paper's protocol: shots, splits, score files,
and a killed evaluation resumed."""

import json

import pytest

from okapi_pipeline.evaluation.evaluate import evaluate_model
from okapi_pipeline.evaluation.lm_eval_tasks import arc_doc, hellaswag_doc, mmlu_doc, task_name
from okapi_pipeline.jsonl import read_jsonl
from tests.support.benchmarks import PROTOCOL, RELEASED, SHOTS, prepare_all


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
