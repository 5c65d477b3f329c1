"""Target languages: BCP-47 tags or common names, resolved to one canonical tag.

resolve_language("pt-br") -> Language("pt-BR", "Portuguese (Brazil)")
resolve_languages(["es,fr", "Portuguese"]) -> (es, fr, pt), each once, in order
"""

from __future__ import annotations

from collections.abc import Iterable
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


def resolve_languages(texts: Iterable[str]) -> tuple[Language, ...]:
    """Several languages, comma-separated and/or given apart, each resolved, each once, in
    the order given. ValueError names the first one not understood."""
    found: dict[str, Language] = {}
    for text in texts:
        for part in text.split(","):
            language = resolve_language(part)  # an empty entry too is refused: a typo
            found.setdefault(language.tag, language)
    if not found:
        raise ValueError("no target language given; use a code like 'es' or a list like 'es,fr'")
    return tuple(found.values())
