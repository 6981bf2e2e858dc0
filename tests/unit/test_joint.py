"""Joint training: every language's data in one file, and a joint job's settings and GPUs."""

import yaml

from okapi_pipeline.cluster.gpu_layout import joint_gpus
from okapi_pipeline.config import load_schema, validate_config
from okapi_pipeline.data.joint import joint_settings, mix_languages
from okapi_pipeline.jsonl import read_jsonl, write_jsonl
from tests.support.workflow import REPO, merged_config


def write_languages(tmp_path, sizes: dict) -> dict:
    paths = {}
    for lang, size in sizes.items():
        paths[lang] = tmp_path / f"{lang}.jsonl"
        write_jsonl(paths[lang], [{"id": f"alpaca-{i:05d}", "instruction": f"{lang} {i}"} for i in range(size)])
    return paths


def test_the_union_keeps_every_record_once_with_its_language_and_an_id_unique_across_languages(tmp_path):
    paths = write_languages(tmp_path, {"vi": 5, "bn": 2})
    counts = mix_languages(paths, tmp_path / "joint.jsonl", "as_is", seed=0)
    mixed = read_jsonl(tmp_path / "joint.jsonl")
    assert counts == {"vi": 5, "bn": 2} and len(mixed) == 7
    # The same English instruction has one id in every language: prefixed, the ids stay unique.
    assert len({record["id"] for record in mixed}) == 7
    assert {(record["language"], record["id"].split(":")[0]) for record in mixed} == {("vi", "vi"), ("bn", "bn")}
    assert sorted(record["instruction"] for record in mixed) == sorted(
        [f"vi {i}" for i in range(5)] + [f"bn {i}" for i in range(2)]
    )
    assert [record["language"] for record in mixed] != ["vi"] * 5 + ["bn"] * 2  # shuffled


def test_equal_takes_as_many_records_from_each_language_as_the_smallest_has(tmp_path):
    paths = write_languages(tmp_path, {"vi": 6, "id": 4, "bn": 3})
    counts = mix_languages(paths, tmp_path / "joint.jsonl", "equal", seed=1)
    assert counts == {"vi": 3, "id": 3, "bn": 3}
    first = read_jsonl(tmp_path / "joint.jsonl")
    mix_languages(paths, tmp_path / "again.jsonl", "equal", seed=1)
    assert read_jsonl(tmp_path / "again.jsonl") == first  # seeded


def paper_config() -> dict:
    config = merged_config("configs/paper.yaml")
    config["self_instruct"]["seed_tasks"] = "demo/seed_tasks.jsonl"  # no download to validate
    return validate_config(config, load_schema())


def test_a_joint_ppo_run_makes_as_many_updates_as_the_per_language_runs_together():
    ppo = paper_config()["ppo"]
    assert joint_settings("ppo", ppo, 26)["rounds"] == 5 * 26
    assert joint_settings("ppo", {**ppo, "rounds": None}, 26)["rounds"] is None  # one pass over the union
    assert joint_settings("sft", paper_config()["sft"], 26) == paper_config()["sft"]  # epochs cover the union


def test_a_joint_job_takes_the_most_gpus_its_batches_divide_by():
    config = paper_config()
    # The paper's PPO batches (896 rollouts, minibatches of 7) divide by 7, as the original ran.
    assert joint_gpus("ppo", config["ppo"], 8) == 7
    assert joint_gpus("sft", config["sft"], 8) == 8  # an effective batch of 16 over 8 processes
    assert joint_gpus("sft", {**config["sft"], "effective_batch_size": 12}, 8) == 6
    assert joint_gpus("reward_model", config["reward_model"], 4) == 4


def test_one_scope_may_be_written_without_a_list():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["training"] = {"scope": "joint"}
    assert validate_config(config, load_schema())["training"]["scope"] == ["joint"]
