"""Word error rate of whole caller sentences on a phone line, for each recogniser setting.

    nice -n 10 .venv/bin/python bench/voice_sentences.py [--modes before,plain,context]
                                                         [--cache /tmp/voice_sentences] [--limit N]

The sentences are what callers say to the example workers (a restaurant's line, a bank's card
desk) in their own words: 4 to 20 words, with dates, times, amounts, names and account numbers
said the way people say them. They were written for this bench, not taken from the development
data. Each is said in the seven synthetic voices of `bench/voice_short.py` (espeak-ng voices and
variants, Piper's joe at two speeds), through the same telephone path (8 kHz G.711 mu-law, back up
to 16 kHz, 0.5 s of pipecat padding), clean or with pink noise at 20 or 10 dB SNR (a third each).

Recognisers, the same bundled model (Whisper tiny.en, int8) in the same run:
  before    the settings before issue 18 (beam 5, up to 120 new tokens, no context)
  plain     today's decoding with no context (`Recogniser.hear_now(audio)`)
  context   what a call does: heard as the answer to the question the sentence answers
            (`hear_now(audio, expectation(field, question))`); a sentence longer than the short
            path's limit is decoded in full either way

Word error rate = (substitutions + deletions + insertions) / reference words over the whole set
(jiwer), after the same normalisation of both sides: lower case, punctuation dropped, numbers
written out in words ("7:30pm" -> "seven thirty p m", "$25" -> "twenty five dollars", "5th" ->
"fifth"), so that "seven thirty" and "7:30" are the same words. Also printed: the share of
sentences heard word for word, WER by voice engine and by noise, p50/p95 decoding time, and the
worst sentences (`--worst N`).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jiwer
from num2words import num2words

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from voice_short import NOISES, VOICES, Clip, Judge, before, phone_audio, piper_clips, say  # noqa: E402

from channels.voice.vocabulary import expectation  # noqa: E402

# (what the caller says, the field of the question it answers or None, that question)
GREETING = "Which day is the table for?"
CARD = "How can I help with your card today?"
SENTENCES: list[tuple[str, str | None, str]] = [
    ("I'd like to book a table for four people tomorrow evening", "date", GREETING),
    ("Can we come on Friday at half past seven", "date", GREETING),
    ("It's for my mother's birthday so there will be six of us", "people", "How many people will there be?"),
    ("Do you have anything around eight o'clock on Saturday night", "date", GREETING),
    ("My name is Daniel Harper and I booked a table last week", None, GREETING),
    ("I need to cancel my booking for Thursday", None, GREETING),
    ("Could you move our reservation from seven to nine", None, GREETING),
    ("Is there parking near the restaurant", None, GREETING),
    ("Do you do gluten free pasta", None, GREETING),
    ("We'll be two adults and three children", "people", "How many people will there be?"),
    ("Actually make that five people instead of four", "people", "How many people will there be?"),
    ("The twelfth of December at one in the afternoon please", "date", GREETING),
    ("Are you open on Sunday lunchtime", None, GREETING),
    ("Can I bring my dog with me", None, GREETING),
    ("That's all correct thank you very much", None, "Is that right?"),
    ("No the time is wrong it should be eight thirty", None, "Is that right?"),
    ("I think I left my umbrella there last night", None, GREETING),
    ("Just a quick table for two in about an hour", "date", GREETING),
    ("I lost my debit card this morning on the bus", None, CARD),
    ("Someone stole my wallet and my credit card was in it", None, CARD),
    ("There is a charge of forty nine dollars that I don't recognise", None, CARD),
    ("My account number is four five seven one nine zero two three", "account_number", "What is your account number?"),
    ("I want to dispute a payment from the twenty second of November", None, CARD),
    ("I've moved house and need to change my address", None, CARD),
    ("Can you freeze my card until I find it", None, CARD),
    ("I'd like to speak to a person please", None, CARD),
    ("The new address is twenty one Station Road", None, "What is your new address?"),
    ("It was a payment of one hundred and twenty pounds to an online shop", None, CARD),
    ("I haven't used the card since Monday", None, CARD),
    ("Yes there are two payments I don't know about", None, "Do any recent payments look wrong?"),
    ("How long will it take for a new card to arrive", None, CARD),
    ("I think somebody has been using my card abroad", None, CARD),
    ("Sorry could you say that again", None, GREETING),
    ("Hold on a second I need to find my diary", None, GREETING),
    ("We're celebrating an anniversary so a quiet table would be lovely", None, GREETING),
    ("Good morning I'm calling about my bank card", None, CARD),
]


@dataclass(frozen=True)
class Sentence:
    text: str
    field: str | None
    question: str


_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_MONEY = re.compile(r"([$£€])(\d+(?:\.\d+)?)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}


def _number(match: re.Match[str]) -> str:
    digits = match[0]
    if len(digits) >= 5 and digits.isdigit():  # an account or phone number is said digit by digit
        return " " + " ".join(num2words(int(d)) for d in digits) + " "
    return f" {num2words(float(digits) if '.' in digits else int(digits))} "


def words(text: str) -> str:
    """Both sides of the comparison in one form: numbers in words, no punctuation, lower case."""
    text = text.lower().replace("p.m.", " p m ").replace("a.m.", " a m ")
    text = re.sub(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm)\b", lambda m: f"{m[1]}{':' + m[2] if m[2] else ''} {m[3][0]} m", text)
    text = _TIME.sub(lambda m: f"{m[1]} {'' if m[2] == '00' else ('oh ' + m[2][1] if m[2][0] == '0' else m[2])}", text)
    text = _MONEY.sub(lambda m: f"{m[2]} {_CURRENCY[m[1]]}", text)
    text = _ORDINAL.sub(lambda m: num2words(int(m[1]), to="ordinal"), text)
    text = _NUMBER.sub(_number, text)
    text = text.replace("-", " ").replace("'", "")
    text = re.sub(r"[^a-z ]+", " ", text)
    # num2words writes "one hundred and twenty"; people say it either way: "and" is not scored.
    return " ".join(w for w in text.split() if w != "and")


def clips(cache: Path) -> list[tuple[Clip, Sentence]]:
    cache.mkdir(parents=True, exist_ok=True)
    out: list[tuple[Clip, Sentence]] = []
    piper_jobs: list[tuple[str, float, Path]] = []
    n = 0
    for i, (text, field, question) in enumerate(SENTENCES):
        for engine, voice, speed in VOICES:
            snr = NOISES[n % len(NOISES)]
            n += 1
            path = cache / f"s{i:02d}-{engine}-{voice.replace('+', '_')}.wav"
            say(text, engine, voice, speed, path, piper_jobs)
            clip = Clip("sentence", text, f"{engine}:{voice}", snr, "all", path)
            out.append((clip, Sentence(text, field, question)))
    if piper_jobs:
        import asyncio

        asyncio.run(piper_clips(piper_jobs))
    return out


def wer(references: list[str], hypotheses: list[str]) -> float:
    return jiwer.wer(references, hypotheses) if references else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="before,plain,context")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/voice_sentences"))
    parser.add_argument("--limit", type=int, default=0, help="at most this many clips (a quick look)")
    parser.add_argument("--worst", type=int, default=8, help="print this many of the worst-heard clips per mode")
    args = parser.parse_args()
    from channels.voice.recogniser import Recogniser

    judge = Judge()
    items = clips(args.cache)
    if args.limit:
        items = items[:: max(1, len(items) // args.limit)][: args.limit]
    recogniser = Recogniser()
    modes = args.modes.split(",")
    heard: dict[str, list[tuple[Clip, str, float]]] = {m: [] for m in modes}
    recogniser.hear_now(phone_audio(items[0][0], 0))  # warm-up
    for n, (clip, sentence) in enumerate(items):
        audio = phone_audio(clip, n)
        for mode in modes:
            began = time.perf_counter()
            if mode == "before":
                text = before(recogniser, audio)
            elif mode == "plain":
                text = recogniser.hear_now(audio).text
            else:
                field = judge.field(sentence.field) if sentence.field else None
                text = recogniser.hear_now(audio, expectation(field, sentence.question)).text
            heard[mode].append((clip, text, time.perf_counter() - began))
    print(f"{len(items)} clips: {len({c.text for c, _ in items})} sentences x {len(VOICES)} voices, telephone path, "
          f"clean/20 dB/10 dB; {sum(len(words(c.text).split()) for c, _ in items)} reference words")
    print(f"{'recogniser':<10} {'WER':>6} {'exact':>6} {'espeak':>7} {'piper':>6} {'clean':>6} {'20 dB':>6} {'10 dB':>6}"
          f" {'p50 ms':>7} {'p95 ms':>7}")
    for mode in modes:
        rows = heard[mode]

        def rate(keep) -> str:  # noqa: ANN001
            chosen = [(words(c.text), words(t)) for c, t, _ in rows if keep(c)]
            return f"{wer([r for r, _ in chosen], [h for _, h in chosen]):.1%}" if chosen else "-"

        exact = sum(words(c.text) == words(t) for c, t, _ in rows) / len(rows)
        times = sorted(s for _, _, s in rows)
        print(f"{mode:<10} {rate(lambda c: True):>6} {exact:>6.1%} {rate(lambda c: c.voice.startswith('espeak')):>7}"
              f" {rate(lambda c: c.voice.startswith('piper')):>6} {rate(lambda c: c.snr is None):>6}"
              f" {rate(lambda c: c.snr == 20.0):>6} {rate(lambda c: c.snr == 10.0):>6}"
              f" {statistics.median(times) * 1e3:>7.0f} {times[int(0.95 * (len(times) - 1))] * 1e3:>7.0f}")
    for mode in modes:
        if not args.worst:
            break
        scored = sorted(heard[mode], key=lambda r: -jiwer.wer(words(r[0].text), words(r[1]) or "-"))
        print(f"\nworst heard, {mode}:")
        for clip, text, _ in scored[: args.worst]:
            print(f"  {clip.voice:<24} {clip.snr or 'clean'!s:>5}  {clip.text!r} -> {text!r}")


if __name__ == "__main__":
    main()
