"""Write the demo's small translated benchmarks in the released Okapi formats.

Simple templated questions in Vietnamese, Indonesian and Bengali, and in English for
the translated-benchmark scenario (sums, capitals,
animals; short everyday scenes for HellaSwag, whose wrong endings are the other
scenes' endings), laid out like the release:
m_arc/{lang}_{train,validation,test}.json, m_hellaswag/{lang}_validation.json,
m_mmlu/{lang}_{dev,val,test}.json. Deterministic: rerunning gives the same files.

    python demo/make_benchmarks.py [OUT_DIR]   (default: demo/benchmarks)
"""

import json
import random
import sys
from pathlib import Path

LETTERS = "ABCDE"
SIZES = {
    "arc": {"train": 30, "validation": 10, "test": 20},
    "mmlu": {"dev": 30, "val": 30, "test": 20},
    "hellaswag": {"validation": 20},
}

PHRASES = {
    "vi": {
        "add": "{a} cộng {b} bằng bao nhiêu?",
        "times": "{a} nhân {b} bằng bao nhiêu?",
        "capital": "Thủ đô của {country} là thành phố nào?",
        "water": "Con vật nào sau đây sống dưới nước?",
        "countries": [
            ("Pháp", "Paris"),
            ("Nhật Bản", "Tokyo"),
            ("Ý", "Rôma"),
            ("Đức", "Berlin"),
            ("Ai Cập", "Cairo"),
            ("Thái Lan", "Băng Cốc"),
            ("Anh", "Luân Đôn"),
            ("Nga", "Mát-xcơ-va"),
        ],
        "water_animals": ["cá", "cá heo", "cá voi", "con mực"],
        "land_animals": ["con mèo", "con chó", "con ngựa", "con gà", "con bò"],
        "scenes": [
            ("Nấu ăn", "Một người phụ nữ đứng trong bếp và rửa rau.", "cô ấy", "cắt rau và cho vào nồi."),
            ("Chơi bóng đá", "Mấy cậu bé chạy trên sân cỏ.", "một cậu bé", "sút quả bóng vào khung thành."),
            ("Rửa xe", "Một người đàn ông xịt nước lên chiếc xe hơi.", "anh ấy", "lau xe bằng một miếng bọt biển."),
            (
                "Sức khỏe",
                "[header] Cách giữ sức khỏe [title] Uống đủ nước mỗi ngày.",
                "[step] uống",
                "ít nhất tám cốc nước mỗi ngày.",
            ),
            ("Làm vườn", "Một bà cụ đào đất trong vườn.", "bà", "trồng một cây con xuống đất."),
        ],
    },
    "id": {
        "add": "Berapa {a} ditambah {b}?",
        "times": "Berapa {a} dikali {b}?",
        "capital": "Apa ibu kota {country}?",
        "water": "Hewan manakah yang hidup di air?",
        "countries": [
            ("Prancis", "Paris"),
            ("Jepang", "Tokyo"),
            ("Italia", "Roma"),
            ("Jerman", "Berlin"),
            ("Mesir", "Kairo"),
            ("Thailand", "Bangkok"),
            ("Inggris", "London"),
            ("Rusia", "Moskow"),
        ],
        "water_animals": ["ikan", "lumba-lumba", "paus", "cumi-cumi"],
        "land_animals": ["kucing", "anjing", "kuda", "ayam", "sapi"],
        "scenes": [
            (
                "Memasak",
                "Seorang wanita berdiri di dapur dan mencuci sayuran.",
                "dia",
                "memotong sayuran dan memasukkannya ke dalam panci.",
            ),
            (
                "Bermain sepak bola",
                "Beberapa anak laki-laki berlari di lapangan rumput.",
                "seorang anak",
                "menendang bola ke gawang.",
            ),
            ("Mencuci mobil", "Seorang pria menyemprotkan air ke mobil.", "dia", "menggosok mobil dengan spons."),
            (
                "Kesehatan",
                "[header] Cara tetap sehat [title] Minum cukup air setiap hari.",
                "[step] minumlah",
                "setidaknya delapan gelas air sehari.",
            ),
            ("Berkebun", "Seorang nenek menggali tanah di kebun.", "nenek itu", "menanam bibit pohon di tanah."),
        ],
    },
    "bn": {
        "add": "{a} যোগ {b} কত?",
        "times": "{a} গুণ {b} কত?",
        "capital": "{country}-এর রাজধানী কোন শহর?",
        "water": "নিচের কোন প্রাণী পানিতে বাস করে?",
        "countries": [
            ("ফ্রান্স", "প্যারিস"),
            ("জাপান", "টোকিও"),
            ("ইতালি", "রোম"),
            ("জার্মানি", "বার্লিন"),
            ("মিশর", "কায়রো"),
            ("থাইল্যান্ড", "ব্যাংকক"),
            ("ইংল্যান্ড", "লন্ডন"),
            ("রাশিয়া", "মস্কো"),
        ],
        "water_animals": ["মাছ", "ডলফিন", "তিমি", "স্কুইড"],
        "land_animals": ["বিড়াল", "কুকুর", "ঘোড়া", "মুরগি", "গরু"],
        "scenes": [
            ("রান্না", "একজন মহিলা রান্নাঘরে দাঁড়িয়ে সবজি ধুচ্ছেন।", "তিনি", "সবজি কেটে হাঁড়িতে দেন।"),
            ("ফুটবল খেলা", "কয়েকটি ছেলে মাঠে দৌড়াচ্ছে।", "একটি ছেলে", "বলটি গোলে মারে।"),
            ("গাড়ি ধোয়া", "একজন লোক গাড়িতে পানি ছিটাচ্ছেন।", "তিনি", "স্পঞ্জ দিয়ে গাড়ি মোছেন।"),
            (
                "স্বাস্থ্য",
                "[header] সুস্থ থাকার উপায় [title] প্রতিদিন যথেষ্ট পানি পান করুন।",
                "[step] পান করুন",
                "দিনে অন্তত আট গ্লাস পানি।",
            ),
            ("বাগান করা", "একজন বৃদ্ধা বাগানে মাটি খুঁড়ছেন।", "তিনি", "মাটিতে একটি চারা গাছ লাগান।"),
        ],
        "digits": "০১২৩৪৫৬৭৮৯",
    },
    # English: the source a translated benchmark (`benchmarks.<bench>.source: translate`) reads.
    "en": {
        "add": "What is {a} plus {b}?",
        "times": "What is {a} times {b}?",
        "capital": "Which city is the capital of {country}?",
        "water": "Which of these animals lives in water?",
        "countries": [
            ("France", "Paris"),
            ("Japan", "Tokyo"),
            ("Italy", "Rome"),
            ("Germany", "Berlin"),
            ("Egypt", "Cairo"),
            ("Thailand", "Bangkok"),
            ("England", "London"),
            ("Russia", "Moscow"),
        ],
        "water_animals": ["fish", "dolphin", "whale", "squid"],
        "land_animals": ["cat", "dog", "horse", "chicken", "cow"],
        "scenes": [
            (
                "Cooking",
                "A woman stands in the kitchen and washes vegetables.",
                "she",
                "cuts the vegetables and puts them in a pot.",
            ),
            ("Playing soccer", "Some boys run on the grass field.", "a boy", "kicks the ball into the goal."),
            ("Washing a car", "A man sprays water on a car.", "he", "wipes the car with a sponge."),
            (
                "Health",
                "[header] How to stay healthy [title] Drink enough water every day.",
                "[step] drink",
                "at least eight glasses of water a day.",
            ),
            ("Gardening", "An old woman digs the soil in the garden.", "she", "plants a young tree in the ground."),
        ],
    },
}


def number(lang: str, value: int) -> str:
    digits = PHRASES[lang].get("digits")
    return str(value).translate(str.maketrans("0123456789", digits)) if digits else str(value)


def multiple_choice(rnd: random.Random, lang: str, template: str, options: int) -> tuple[str, list[str], int]:
    """One templated question: (question, option texts, index of the right one)."""
    phrases = PHRASES[lang]
    if template in ("add", "times"):
        a, b = rnd.randint(2, 12), rnd.randint(2, 12)
        right = a + b if template == "add" else a * b
        wrong = rnd.sample([v for v in range(max(1, right - 9), right + 10) if v != right], options - 1)
        question = phrases[template].format(a=number(lang, a), b=number(lang, b))
        texts = [number(lang, v) for v in [right] + wrong]
    elif template == "capital":
        country, right = rnd.choice(phrases["countries"])
        wrong = rnd.sample([c for _, c in phrases["countries"] if c != right], options - 1)
        question, texts = phrases["capital"].format(country=country), [right] + wrong
    else:
        right = rnd.choice(phrases["water_animals"])
        question, texts = phrases["water"], [right] + rnd.sample(phrases["land_animals"], options - 1)
    order = list(range(options))
    rnd.shuffle(order)
    return question, [texts[i] for i in order], order.index(0)


def arc_record(rnd, lang, split, index) -> dict:
    # Mostly 4 options; a few 3- and 5-option items as in ARC-Challenge.
    options = {3: 3, 7: 5}.get(index % 10, 4)
    question, texts, answer = multiple_choice(rnd, lang, rnd.choice(["add", "capital", "water"]), options)
    record = {
        "id": f"ARC-Challenge/{split}/demo-{lang}-{index:04d}",
        "answer": LETTERS[answer],
        "instruction": question,
    }
    record.update({f"option_{LETTERS[i].lower()}": text for i, text in enumerate(texts)})
    return record


def mmlu_record(rnd, lang, split, index) -> dict:
    subject, template = rnd.choice(
        [
            ("elementary_mathematics", "add"),
            ("elementary_mathematics", "times"),
            ("high_school_geography", "capital"),
            ("high_school_biology", "water"),
        ]
    )
    question, texts, answer = multiple_choice(rnd, lang, template, 4)
    record = {"instruction": question}
    record.update({f"option_{LETTERS[i].lower()}": text for i, text in enumerate(texts)})
    record.update({"answer": LETTERS[answer], "id": f"{subject}/{split}/{index}"})
    return record


def hellaswag_record(rnd, lang, index) -> dict:
    phrases = PHRASES[lang]
    label_text, ctx_a, ctx_b, right = phrases["scenes"][index % len(phrases["scenes"])]
    # Distractors: the right endings of the other scenes, as long and as fluent.
    others = [scene[3] for scene in phrases["scenes"] if scene[3] != right]
    endings = [right] + rnd.sample(others, 3)
    rnd.shuffle(endings)
    wikihow = ctx_a.startswith("[header]")
    return {
        "ind": 1000 + index,
        "activity_label": label_text,
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": f"{ctx_a} {ctx_b}",
        "endings": endings,
        "source_id": f"wikihow~{5000 + index}" if wikihow else f"activitynet~v_demo{index:04d}",
        "split": "val",
        "split_type": "indomain" if index % 2 else "zeroshot",
        "label": endings.index(right),
    }


def write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main(out_dir: Path) -> None:
    for lang in PHRASES:
        rnd = random.Random(f"okapi-demo-{lang}")
        for split, size in SIZES["arc"].items():
            write(out_dir / "m_arc" / f"{lang}_{split}.json", [arc_record(rnd, lang, split, i) for i in range(size)])
        for split, size in SIZES["mmlu"].items():
            write(out_dir / "m_mmlu" / f"{lang}_{split}.json", [mmlu_record(rnd, lang, split, i) for i in range(size)])
        for split, size in SIZES["hellaswag"].items():
            write(
                out_dir / "m_hellaswag" / f"{lang}_{split}.json", [hellaswag_record(rnd, lang, i) for i in range(size)]
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "benchmarks")
