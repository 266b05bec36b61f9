"""Given names and surnames people may say, from Faker's person providers (PyPI `faker`, MIT,
released monthly; the project already ships it for the voice channel's vocabulary).

Used only where the rules are unsure: a name that is also a common word ("I'm Grace", "as
Will Turner") or written in lower case ("this is daniel"). Chosen over names-dataset
(hundreds of megabytes in memory, seconds to load) and the 2013 `names` package (US census of
1990 only). Loaded once per process, on the first unsure reading (about a second; the bench
prints it), so a worker can call `preload()` at start.
"""

from __future__ import annotations

import functools
import importlib
import unicodedata

# Locales whose names are written in Latin script, of several origins (the voice vocabulary's list).
LOCALES = ("en_US", "en_GB", "en_IE", "en_NZ", "en_IN", "en_NG", "en_PK", "en_KE", "es_ES", "es_MX", "es_CO",
           "pt_BR", "pt_PT", "it_IT", "fr_FR", "de_DE", "nl_NL", "pl_PL", "cs_CZ", "tr_TR", "vi_VN", "yo_NG",
           "ig_NG", "ha_NG", "sw", "zu_ZA", "id_ID", "fil_PH", "sv_SE", "no_NO", "da_DK", "fi_FI", "ro_RO",
           "hu_HU", "hr_HR", "ga_IE")
_PLACEHOLDERS = {"doe"}


def _plain(name: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)).lower()


@functools.lru_cache(maxsize=2)
def _load(part: str) -> frozenset[str]:
    out: set[str] = set()
    for locale in LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        for attr in (f"{part}_names", f"{part}_names_male", f"{part}_names_female", f"{part}_names_unisex",
                     f"{part}_names_nonbinary"):
            for name in getattr(provider, attr, None) or ():
                word = _plain(str(name))
                if word.isascii() and word not in _PLACEHOLDERS:
                    out.add(word)
    return frozenset(out)


def given_names() -> frozenset[str]:
    """Lower-cased, accents folded: 'maria', 'jose', 'grace'."""
    return _load("first")


def surnames() -> frozenset[str]:
    return _load("last")


def preload() -> None:
    given_names()
    surnames()
