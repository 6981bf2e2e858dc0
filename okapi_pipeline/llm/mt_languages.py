"""How each machine-translation model family marks languages: the one place where our
ISO 639-1 codes meet each family's.

- NLLB-200 (m2m_100 architecture): FLORES-200 codes such as `vie_Latn` before the
  source and as the first generated token;
- M2M100: `__vi__` tokens in the same places;
- MADLAD-400 (T5): a `<2vi>` token before the source.

The tables of covered languages, `language_code` (our code to the family's token),
`detect_family` (the family from a model's vocabulary) and `UnsupportedLanguage` (the
error for a language a family lacks) serve the `mt` backend (okapi_pipeline.llm.mt) and the
tiny translation models (okapi_pipeline.tiny.mt_models).
"""

from okapi_pipeline.llm.errors import UserError

# ISO 639-1 -> FLORES-200 (NLLB-200): English and the 26 Okapi languages, and a few more.
FLORES = {
    "en": "eng_Latn",
    "ru": "rus_Cyrl",
    "de": "deu_Latn",
    "zh": "zho_Hans",
    "fr": "fra_Latn",
    "es": "spa_Latn",
    "it": "ita_Latn",
    "nl": "nld_Latn",
    "vi": "vie_Latn",
    "id": "ind_Latn",
    "ar": "arb_Arab",
    "hu": "hun_Latn",
    "ro": "ron_Latn",
    "da": "dan_Latn",
    "sk": "slk_Latn",
    "uk": "ukr_Cyrl",
    "ca": "cat_Latn",
    "sr": "srp_Cyrl",
    "hr": "hrv_Latn",
    "hi": "hin_Deva",
    "bn": "ben_Beng",
    "ta": "tam_Taml",
    "ne": "npi_Deva",
    "ml": "mal_Mlym",
    "mr": "mar_Deva",
    "te": "tel_Telu",
    "kn": "kan_Knda",
    "pt": "por_Latn",
    "pl": "pol_Latn",
    "cs": "ces_Latn",
    "sv": "swe_Latn",
    "fi": "fin_Latn",
    "tr": "tur_Latn",
    "ja": "jpn_Jpan",
    "ko": "kor_Hang",
    "el": "ell_Grek",
    "he": "heb_Hebr",
    "fa": "pes_Arab",
    "th": "tha_Thai",
    "ur": "urd_Arab",
    "sw": "swh_Latn",
    "gu": "guj_Gujr",
    "pa": "pan_Guru",
    "bg": "bul_Cyrl",
    "no": "nob_Latn",
    "et": "est_Latn",
    "lt": "lit_Latn",
    "lv": "lvs_Latn",
    "sl": "slv_Latn",
    "ms": "zsm_Latn",
    "tl": "tgl_Latn",
    "af": "afr_Latn",
}
# The 100 languages of M2M100 (ISO 639-1 where one exists): Telugu is not among them.
M2M100 = set(
    """af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl
    gu ha he hi hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn
    mr ms my ne nl no ns oc or pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr
    uk ur uz vi wo xh yi yo zh zu""".split()
)
# MADLAD-400 covers 400+ languages under their ISO codes; these are the ones checked here.
MADLAD = set(FLORES)
FAMILIES = ("nllb", "m2m100", "madlad")


class UnsupportedLanguage(UserError, ValueError):
    """The MT model (family) has no code or token for a language."""


def language_code(family: str, lang: str) -> str:
    """The token that marks language `lang` (ISO 639-1) for a model family: the one
    place where our codes meet each family's."""
    if family == "nllb":
        if lang not in FLORES:
            raise UnsupportedLanguage(
                f"no FLORES-200 code known for '{lang}' (NLLB-200); add it to okapi_pipeline/llm/mt_languages.py FLORES"
            )
        return FLORES[lang]
    if family == "m2m100":
        if lang not in M2M100:
            raise UnsupportedLanguage(f"M2M100 does not cover '{lang}'; use NLLB-200 or MADLAD-400 for it")
        return f"__{lang}__"
    if family == "madlad":
        if lang not in MADLAD:
            raise UnsupportedLanguage(
                f"no MADLAD-400 code known for '{lang}'; add it to okapi_pipeline/llm/mt_languages.py MADLAD"
            )
        return f"<2{lang}>"
    raise ValueError(f"unknown MT model family '{family}' ({', '.join(FAMILIES)})")


def detect_family(vocab) -> str:
    """How a model marks languages, from the tokens its vocabulary has for English."""
    for family in FAMILIES:
        if language_code(family, "en") in vocab:
            return family
    raise ValueError(
        "not a known MT model: its vocabulary has none of eng_Latn (NLLB), __en__ (M2M100) and <2en> (MADLAD-400)"
    )
