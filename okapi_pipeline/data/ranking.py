"""Ranked responses: the SFT model's K samples (generation.py) back-translated, ranked in English, paired.

As in Okapi, ranking happens in English: the instruction and the responses are
translated back and the judge ranks them. The `openai` judge is asked for a ranking;
the local `hf` judge ranks by the log-probability of each response.
"""

import logging
from itertools import combinations

from okapi_pipeline.jsonl import iter_jsonl, read_jsonl, write_jsonl
from okapi_pipeline.languages import SOURCE_LANGUAGE, language_name
from okapi_pipeline.llm.checks import strict_checks, translation_check
from okapi_pipeline.llm.client import LLMClient
from okapi_pipeline.llm.job import BudgetCheck, job_report, run_llm_job
from okapi_pipeline.llm.prompts import field_request, load_prompt
from okapi_pipeline.llm.requests import JsonRequest, Rejected
from okapi_pipeline.template import alpaca_prompt

log = logging.getLogger(__name__)


def valid_ranking(request: JsonRequest, answer: dict) -> str | None:
    """The judge's answer must be a permutation of 1..K (K = the responses sent)."""
    k = len(request.user["responses"])
    ranking = answer["ranking"]
    if (
        not isinstance(ranking, list)
        or not all(type(r) is int for r in ranking)
        or sorted(ranking) != list(range(1, k + 1))
    ):
        return f"ranking is not a permutation of 1..{k}"
    return None


def back_translation_fields(record: dict) -> dict[str, str]:
    fields = {"instruction": record["instruction"], "input": record["input"]}
    fields.update({f"response_{n}": text for n, text in enumerate(record["responses"], 1)})
    return fields


def rank_shard(
    responses_path,
    ranked_path,
    rejects_path,
    report_path,
    language: str,
    rank_prompt_file,
    back_translation_prompt_file,
    llm_settings: dict,
    cache_name: str,
    threads: int = 1,
    back_translated_path=None,
    budget: BudgetCheck | None = None,
) -> dict:
    """Back-translate and rank the items of one shard's responses file (`generate_responses`'s).

    English items (the control language) are ranked as they are, with no back-translation.

    With `back_translated_path` (the output of `back_translate_shard`, when the
    `back_translation` stage has a translator of its own, e.g. an `mt` model on a GPU
    node while the judge is an API) the English comes from there. Fails (after writing
    the outputs) when more items were rejected than `max_reject_share` accepts; with
    `budget`, refuses to start when over budget.
    """
    items = read_jsonl(responses_path)

    def work(clients):
        ranked, rejects = [], []
        if items:
            client = clients(cache_name)
            if language == SOURCE_LANGUAGE:
                english = [(item, english_as_is(item)) for item in items]
            elif back_translated_path is None:
                english, rejects = back_translate(client, items, language, back_translation_prompt_file)
            else:
                english, rejects = read_back_translations(back_translated_path)
            ranked, rank_rejects = _rank(client, english, rank_prompt_file)
            rejects += rank_rejects
        write_jsonl(ranked_path, ranked)
        return len(items), rejects

    return run_llm_job(
        f"ranking {cache_name}",
        llm_settings,
        cache_name,
        work,
        threads=threads,
        budget=budget,
        rejects_path=rejects_path,
        report_path=report_path,
        report=lambda total, rejects: job_report(total, rejects, "ranked", language=language),
    )


def english_as_is(item: dict) -> dict:
    """What the judge reads of an English item: its own prompt and responses."""
    return {"instruction": item["instruction"], "input": item["input"], "responses": list(item["responses"])}


def back_translate(client: LLMClient, items, language, back_translation_prompt_file):
    """(item, English) pairs of the items whose back-translation was usable, and rejects."""
    system = load_prompt(back_translation_prompt_file, language=language_name(language))
    fields = [back_translation_fields(item) for item in items]
    check = translation_check("en", strict_checks(client.settings))
    results = client.json_requests([field_request(system, f, (language, "en")) for f in fields], check=check)
    rejects, english = [], []
    for item, sent, result in zip(items, fields, results):
        if isinstance(result, Rejected):
            rejects.append(
                {"id": item["id"], "stage": "back-translation", "reason": result.reason, "answer": result.answer}
            )
            continue
        back = {key: result.get(key, "") if value else "" for key, value in sent.items()}
        english.append(
            (
                item,
                {
                    "instruction": back["instruction"],
                    "input": back["input"],
                    "responses": [back[f"response_{n}"] for n in range(1, len(item["responses"]) + 1)],
                },
            )
        )
    return english, rejects


def back_translate_shard(
    responses_path,
    out_path,
    language: str,
    back_translation_prompt_file,
    llm_settings: dict,
    cache_name: str,
    threads: int = 1,
    budget: BudgetCheck | None = None,
) -> int:
    """Back-translation alone, for a `back_translation` translator of its own: one line per
    item, {"item", "english"} or {"item", "reject"}; rank_shard ranks and reports them
    (so no report and no reject-share check here)."""
    items = read_jsonl(responses_path)
    lines = []

    def work(clients):
        english, rejects = (
            back_translate(clients(cache_name), items, language, back_translation_prompt_file) if items else ([], [])
        )
        lines.extend(
            [{"item": item, "english": en} for item, en in english]
            + [{"item": {"id": reject["id"]}, "reject": reject} for reject in rejects]
        )
        return len(items), rejects

    run_llm_job(
        f"back-translation {cache_name}",
        llm_settings,
        cache_name,
        work,
        threads=threads,
        budget=budget,
        check_share=False,
    )
    return write_jsonl(out_path, lines)


def read_back_translations(path):
    english, rejects = [], []
    for line in iter_jsonl(path):
        if "reject" in line:
            rejects.append(line["reject"])
        else:
            english.append((line["item"], line["english"]))
    return english, rejects


def _rank(client: LLMClient, english: list[tuple[dict, dict]], rank_prompt_file):
    """Rank the back-translated items: (ranked items, rejects)."""
    rejects = []
    if client.settings["backend"] == "hf":
        rankings = [_rank_by_score(client, en) for _, en in english]
    else:
        rankings = _rank_by_judge(client, english, load_prompt(rank_prompt_file))
    ranked = []
    for (item, en), ranking in zip(english, rankings):
        if isinstance(ranking, Rejected):
            rejects.append({"id": item["id"], "stage": "ranking", "reason": ranking.reason, "answer": ranking.answer})
        else:
            ranked.append({**item, "ranking": ranking, "english": en})
    return ranked, rejects


def _rank_by_score(client: LLMClient, english: dict) -> list[int]:
    scores = client.score(alpaca_prompt(english["instruction"], english["input"]), english["responses"])
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def _rank_by_judge(client: LLMClient, english: list[tuple[dict, dict]], system: str) -> list:
    """0-based rankings (best first), or Rejected."""
    requests = []
    for _, en in english:
        user = {"instruction": en["instruction"]}
        if en["input"]:
            user["input"] = en["input"]
        user["responses"] = en["responses"]
        requests.append(JsonRequest(system=system, user=user, keys=("ranking",)))
    results = client.json_requests(requests, check=valid_ranking)
    return [result if isinstance(result, Rejected) else [r - 1 for r in result["ranking"]] for result in results]


def preference_pairs(ranked_paths, out_path) -> int:
    """Every (better, worse) pair of each ranking, in the released Okapi keys (sic), target language.

    Pairs of identical texts carry no preference and are left out.
    """
    pairs, identical = [], 0
    for path in ranked_paths:
        for record in iter_jsonl(path):
            ordered = [record["responses"][i] for i in record["ranking"]]
            for better, worse in combinations(ordered, 2):
                if better == worse:
                    identical += 1
                    continue
                pairs.append(
                    {
                        "id": record["id"],
                        "instruction": record["instruction"],
                        "input": record["input"],
                        "prefered_output": better,
                        "rejected_output": worse,
                    }
                )
    if identical:
        log.info("%d pairs of identical responses left out", identical)
    return write_jsonl(out_path, pairs)
