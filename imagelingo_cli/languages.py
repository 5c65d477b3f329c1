"""Target languages: BCP-47 tags or common names, resolved to one canonical tag."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    tag: str  # canonical BCP-47, e.g. "es", "pt-BR", "zh-Hant"
    name: str  # English display name, e.g. "Portuguese (Brazil)"


def resolve_language(text: str) -> Language:
    """`es`, `pt-br`, `Spanish`, `brazilian portuguese` -> Language. ValueError says what was not understood."""
    import langcodes

    wanted = text.strip()
    if not wanted:
        raise ValueError(
            "the target language is empty; give a code like 'es' or a name like 'Spanish'"
        )
    language = None
    try:
        candidate = langcodes.Language.get(wanted)
        if candidate.is_valid() and candidate.language and candidate.language != "und":
            language = candidate
    except ValueError:  # langcodes.LanguageTagError is a ValueError
        language = None
    unknown = ValueError(
        f"unknown language {wanted!r}: use a BCP-47 code such as 'es', 'pt-BR', 'zh-Hant' "
        "or a language name such as 'Spanish'"
    )
    if language is None:
        if "-" in wanted or "_" in wanted:  # meant as a tag, and not a valid one
            raise unknown
        try:
            # Names match loosely by design ("Hakka Chinese" is Hakka), tags never do.
            language = langcodes.find(wanted)
        except LookupError:
            raise unknown from None
    tag = language.simplify_script().to_tag()
    return Language(tag=tag, name=language.display_name())
