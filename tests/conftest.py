"""Shared fixtures (a tokenizer, tiny pretrained models and tokenizer variants, built once
per session; a local LFS host) and the layer markers: tests/unit, tests/integration and
tests/workflow mark their tests by folder."""

import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest

from okapi_pipeline.template import alpaca_prompt
from tests.support.tiny_models import tiny_mt_model

# The fake OpenAI-compatible server's fixtures (fake_openai, openai_settings).
pytest_plugins = ["tests.support.fake_openai"]

# Each layer's marker; `slow` stays "not unit", so `-m "not slow"` still selects the fast tests.
LAYER_MARKERS = {"unit": ("unit",), "integration": ("integration", "slow"), "workflow": ("workflow", "slow")}
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        parts = Path(item.path).relative_to(TESTS).parts
        for marker in LAYER_MARKERS.get(parts[0], ()) if len(parts) > 1 else ():
            item.add_marker(marker)


# A little multilingual text (the demo languages and a few more), plus the English
# Alpaca template the models see in every later stage.
TINY_CORPUS = """\
The cat sits on the mat. The dog runs in the park. Water is wet and the sun is hot.
Give three tips for staying healthy. Eat a balanced diet, exercise and sleep well.
What is the capital of France? The capital of France is Paris.
Translate the sentence into English. Write a short poem about the sea.
Con mèo ngồi trên tấm thảm. Con chó chạy trong công viên. Nước thì ướt.
Hãy đưa ra ba lời khuyên để giữ sức khỏe. Ăn uống cân bằng, tập thể dục và ngủ đủ giấc.
Thủ đô của Pháp là gì? Thủ đô của Pháp là Paris. Viết một bài thơ ngắn về biển.
Kucing duduk di atas tikar. Anjing berlari di taman. Air itu basah dan matahari panas.
Berikan tiga tips untuk tetap sehat. Makan makanan seimbang, berolahraga dan tidur cukup.
Apa ibu kota Prancis? Ibu kota Prancis adalah Paris. Tulis puisi pendek tentang laut.
বিড়াল মাদুরের উপর বসে আছে। কুকুর পার্কে দৌড়ায়। জল ভেজা এবং সূর্য গরম।
সুস্থ থাকার জন্য তিনটি পরামর্শ দিন। সুষম খাদ্য খান, ব্যায়াম করুন এবং ভালো ঘুমান।
ফ্রান্সের রাজধানী কী? ফ্রান্সের রাজধানী প্যারিস। সমুদ্র নিয়ে একটি ছোট কবিতা লিখুন।
Die Katze sitzt auf der Matte. Der Hund läuft im Park. Wasser ist nass.
Le chat est assis sur le tapis. Le chien court dans le parc. L'eau est mouillée.
"""


def write_corpus(directory) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    template = (
        alpaca_prompt("Give three tips.", "") + "Eat well.\n" + alpaca_prompt("Translate.", "Con mèo") + "The cat."
    )
    (directory / "text.txt").write_text(TINY_CORPUS * 3, encoding="utf-8")
    (directory / "template.txt").write_text(template * 3, encoding="utf-8")


TINY_PRETRAINING = {"max_length": 64, "pretrain_epochs": 2, "seed": 0}
TINY_BUILDS = {
    "llama": {"architecture": "llama", "hidden_size": 32, "intermediate_size": 64, "num_layers": 4, "num_heads": 4},
    "bloom": {"architecture": "bloom", "hidden_size": 32, "num_layers": 4, "num_heads": 4},
}


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    write_corpus(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory, tiny_corpus_dir):
    from okapi_pipeline.tiny.tokenizers import train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(tiny_corpus_dir, out, vocab_size=600)
    return out


def _build(tmp_path_factory, tokenizer_dir, corpus_dir, architecture):
    from okapi_pipeline.tiny.models import build_tiny_model

    out = tmp_path_factory.mktemp(f"tiny-{architecture}")
    build_tiny_model(tokenizer_dir, corpus_dir, out, TINY_BUILDS[architecture], TINY_PRETRAINING, threads=1)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer_dir, tiny_corpus_dir):
    return _build(tmp_path_factory, tiny_tokenizer_dir, tiny_corpus_dir, "llama")


@pytest.fixture(scope="session")
def tiny_bloom_dir(tmp_path_factory, tiny_tokenizer_dir, tiny_corpus_dir):
    return _build(tmp_path_factory, tiny_tokenizer_dir, tiny_corpus_dir, "bloom")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, tiny_tokenizer_dir, tiny_corpus_dir):
    """A tiny Qwen2 (Qwen2.5-7B's architecture) of the tiny Llama's sizes, same tokenizer."""
    from okapi_pipeline.tiny.models import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-qwen2")
    build = {**TINY_BUILDS["llama"], "architecture": "qwen2"}
    build_tiny_model(tiny_tokenizer_dir, tiny_corpus_dir, out, build, TINY_PRETRAINING, threads=1)
    return out


@pytest.fixture(scope="session")
def tiny_nllb_dir(tmp_path_factory, tiny_corpus_dir):
    return tiny_mt_model(tmp_path_factory, tiny_corpus_dir, "nllb")


# ---- pad == eos (Qwen2.5 sets it, Llama-3 gets it) and no chat template ---------------------


@pytest.fixture(scope="session")
def pad_is_eos_dir(tmp_path_factory, tiny_qwen2_dir):
    """The tiny Qwen2 with a Qwen2.5-style tokenizer: pad = eos, no unk, no BOS added, a chat template."""
    out = tmp_path_factory.mktemp("pad-is-eos")
    for path in tiny_qwen2_dir.iterdir():
        shutil.copy(path, out)
    (out / "tokenizer.json").write_text(
        json.dumps({**json.loads((out / "tokenizer.json").read_text()), "post_processor": None})
    )
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.update(
        tokenizer_class="Qwen2Tokenizer",
        bos_token=None,
        unk_token=None,
        pad_token=config["eos_token"],
        chat_template="{% for m in messages %}<s>{{ m.role }}\n{{ m.content }}</s>{% endfor %}",
    )
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


@pytest.fixture(scope="session")
def nothing_spare_dir(tmp_path_factory, pad_is_eos_dir):
    """pad_is_eos_dir with <pad> and <unk> made plain tokens: no spare special token, so the pad stays the eos."""
    out = tmp_path_factory.mktemp("nothing-spare")
    for path in pad_is_eos_dir.iterdir():
        shutil.copy(path, out)
    backend = json.loads((out / "tokenizer.json").read_text())
    for token in backend["added_tokens"]:
        token["special"] = token["content"] in ("<s>", "</s>")
    (out / "tokenizer.json").write_text(json.dumps(backend))
    return out


@pytest.fixture
def lfs_host(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/served, as the LFS host serves the objects."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits up to one interval.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
