"""Local translation through Snakemake: NLLB planned on GPU nodes and the judge on the login
node, and the MT demo (.test/config_mt.yaml) run to the translator comparison."""

import json
import time

import pandas as pd
import yaml

from okapi_pipeline.jsonl import read_jsonl
from tests.support.workflow import REPO, copy_workflow, job_counts, snakemake


def test_local_translation_plans_nllb_on_gpu_nodes_and_the_judge_on_the_login_node(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(
        workdir,
        "-n",
        "--cores",
        "2",
        "--quiet",
        "rules",
        "--configfile",
        "configs/paper.yaml",
        "configs/local-translation.yaml",
    )
    counts = job_counts(result.stdout + result.stderr)
    assert counts["back_translate_shard"] == counts["rank_shard"] > 0
    assert counts["fetch_base_model"] == 3  # the two base models and NLLB-200
    import importlib.util

    spec = importlib.util.spec_from_file_location("plan_cluster", REPO / "tools/plan_cluster.py")
    plan_cluster = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plan_cluster)
    rules, _ = plan_cluster.workflow_rules(["configs/paper.yaml", "configs/local-translation.yaml"])
    # NLLB on GPU nodes; the API judge on the login node.
    assert not rules["translate_shard"]["localrule"] and not rules["back_translate_shard"]["localrule"]
    assert rules["rank_shard"]["localrule"]


# ---- the demo variant: translation with a tiny MT model, end to end --------------------------


def test_the_mt_demo_translates_and_compares_translators(tmp_path):
    workdir = copy_workflow(tmp_path)
    started = time.monotonic()
    snakemake(workdir, "--cores", "2", "translations", "translator_comparison", "--configfile", ".test/config_mt.yaml")
    elapsed = time.monotonic() - started
    settings = yaml.safe_load((REPO / ".test/config_mt.yaml").read_text())
    for split, entry in settings["split"].items():
        translated = read_jsonl(workdir / f"results/data/vi/{split}.jsonl")
        assert 0 < len(translated) <= entry["size"]
        assert all(record["instruction"] for record in translated)
    qa = json.loads((workdir / "results/qa/vi.json").read_text())
    assert qa["totals"]["segments"] > 0 and qa["totals"]["segments_cut"] == 0
    table = pd.read_csv(workdir / "results/tables/translators.csv")
    assert sorted(zip(table["language"], table["translator"])) == [
        ("vi", "tiny-llama"),
        ("vi", "tiny-nllb"),
        ("vi", "tiny-nllb-ct2"),
    ]
    assert table["chrf_round_trip"].between(0, 100).all() and (table["seconds_per_1k"] > 0).all()
    assert (workdir / "results/figures/translators.png").exists()
    log = (workdir / "logs/translate/vi/sft/0000.log").read_text()
    assert "segments/s" in log
    print(f"mt demo: {elapsed:.0f} s")
    # Finished: nothing to redo.
    plan = snakemake(
        workdir, "-n", "--cores", "2", "translations", "translator_comparison", "--configfile", ".test/config_mt.yaml"
    )
    assert "Nothing to be done" in plan.stdout + plan.stderr
