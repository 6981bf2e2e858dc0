"""The demo's tiny models and tokenizers, built from configs with no download."""
