"""The Okapi languages and their resource groups (share of CommonCrawl)."""

# The language every split is made in and translated from: as a language of its own it
# is the control row (no translation stage), in a group of its own.
SOURCE_LANGUAGE = "en"
CONTROL_GROUP = "control"
OKAPI_GROUPS = {
    "high": ["ru", "de", "zh", "fr", "es", "it", "nl", "vi"],
    "medium": ["id", "ar", "hu", "ro", "da", "sk", "uk", "ca", "sr", "hr", "hi"],
    "low": ["bn", "ta", "ne", "ml", "mr", "te", "kn"],
}
GROUP_ORDER = ["high", "medium", "low", "other", CONTROL_GROUP]

NAMES = {
    "en": "English",
    "ru": "Russian",
    "de": "German",
    "zh": "Chinese",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "nl": "Dutch",
    "vi": "Vietnamese",
    "id": "Indonesian",
    "ar": "Arabic",
    "hu": "Hungarian",
    "ro": "Romanian",
    "da": "Danish",
    "sk": "Slovak",
    "uk": "Ukrainian",
    "ca": "Catalan",
    "sr": "Serbian",
    "hr": "Croatian",
    "hi": "Hindi",
    "bn": "Bengali",
    "ta": "Tamil",
    "ne": "Nepali",
    "ml": "Malayalam",
    "mr": "Marathi",
    "te": "Telugu",
    "kn": "Kannada",
}

# ISO 639-1: every code a user may add as a new language.
ISO_639_1 = set(
    """aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs
    cu cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha
    he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn
    ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb
    nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd
    se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw
    ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu""".split()
)


def language_group(lang: str, extra_groups: dict | None = None) -> str:
    """The resource group of a language: "control" for English, Okapi's, else the config's, else "other"."""
    if lang == SOURCE_LANGUAGE:
        return CONTROL_GROUP
    for group, members in OKAPI_GROUPS.items():
        if lang in members:
            return group
    return (extra_groups or {}).get(lang, "other")


def target_languages(languages: list[str]) -> list[str]:
    """The languages translated into: every one but English (the control, in no overall average)."""
    return [lang for lang in languages if lang != SOURCE_LANGUAGE]


def language_name(lang: str) -> str:
    return NAMES.get(lang, lang)
