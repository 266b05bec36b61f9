"""Short answers on a phone line: names, times in words, party sizes, dates, yes/no.

    nice -n 10 .venv/bin/python bench/voice_short.py [--half tune|test|all] [--modes plain,context]
                                                     [--cache /tmp/voice_short] [--limit N]

Each answer is said the way a caller answers the restaurant worker's question, in several
synthetic voices: espeak-ng voices and variants (US, British, Scottish, Caribbean; male and
female variants) and Piper's joe at two speeds (length scale 1.0 and 1.3). Each clip goes
through the telephone path of a call (8 kHz G.711 mu-law, back up to 16 kHz, as `channel-worker
transcribe --telephone` does), with pipecat's 0.5 s of trailing silence, clean or with pink
noise at 20 dB or 10 dB SNR (a third each, by rotation).

Value accuracy: the value the worker takes from what was heard (the restaurant spec's
extractor for the field asked, `extraction.intents.yes_no` at the confirmation) against the
value taken from the answer's own text. Per kind and overall, with 95 % Wilson intervals,
p50/p95 recognition time, for each mode in the same run:

  before    the recogniser before issue 18: beam 5, up to 120 new tokens, no context, the
            decoder's repetitions kept (reproduced here, same model and audio)
  plain     today's decoding without context: new tokens capped by the clip's length,
            repetitions kept once (`Recogniser.hear_now(audio)`)
  context   what a call does now: the question as previous text and the field's expected
            phrases scored against the audio (`hear_now(audio, expectation(field, question))`)

Items are split in two halves by answer (even/odd): settings were tuned on `tune`; `test`
was not looked at while tuning. Names: the share of answers in the bundled name list is printed,
since a name outside it can only be heard by free transcription.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.voice.audio import for_recogniser, read_wav, resample, telephone  # noqa: E402
from channels.voice.vocabulary import expectation, names  # noqa: E402
from dialogue.spec_loader import load_spec  # noqa: E402
from extraction.intents import yes_no  # noqa: E402
from worker.extract_io import ExtractRequest, run_one  # noqa: E402
from worker.extraction_setup import build_extractor  # noqa: E402

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=ZoneInfo("Europe/London"))  # a Sunday; dates are read from it
CONFIRMATION = "So that's a table for 4 on Friday 04 December at 19:30, under Maria Lopez. Is that right?"

FIRST = ["Maria", "James", "Priya", "Siobhan", "Mohammed", "Wei", "Olga", "Kenji", "Aisha", "Lucas", "Chloe",
         "Emeka", "Sofia", "Dmitri", "Fatima", "Liam", "Hannah", "Carlos", "Yuki", "Amara", "Giulia", "Raj",
         "Ingrid", "Tomasz"]
LAST = ["Lopez", "Smith", "Nguyen", "Kowalski", "Okafor", "Patel", "O'Brien", "Schmidt", "Rossi", "Tanaka",
        "Johnson", "Garcia", "Murphy", "Kim", "Haddad", "Novak", "Jensen", "Brown", "Silva", "Ivanova",
        "Fischer", "Chen", "Adeyemi", "MacDonald"]
TIMES = ["seven thirty", "half past eight", "quarter to nine", "eight pm", "seven o'clock", "six fifteen",
         "one pm", "nine thirty", "quarter past seven", "eight forty five", "at seven", "twelve thirty",
         "half past six", "eight o'clock", "seven pm", "about eight", "noon", "nine pm"]
COUNTS = ["two", "four", "six people", "just me", "three of us", "a table for five", "eight", "ten people",
          "twelve", "seven people", "nine", "two people", "four of us", "eleven", "three", "five people"]
DATES = ["tomorrow", "Friday", "this Saturday", "the twelfth of December", "December the fifth", "Thursday",
         "next Tuesday", "the third of December", "Wednesday", "tomorrow night", "Saturday the fifth",
         "the twentieth", "Monday", "December tenth", "Sunday the sixth", "the eighteenth of December"]
YES_NO = ["yes", "no", "yeah", "yes please", "that's right", "nope", "no thanks", "correct", "yep",
          "no that's wrong", "yes that's right", "no it isn't"]

QUESTIONS = {"first_name": "Can I have your first name?", "last_name": "And your last name?",
             "time": "Lovely. What time would suit you?", "people": "How many people will there be?",
             "date": "What day would you like to come?", "yes_no": CONFIRMATION}
SETS = {"first_name": FIRST, "last_name": LAST, "time": TIMES, "people": COUNTS, "date": DATES, "yes_no": YES_NO}
# espeak-ng voice+variant, words per minute; Piper joe at a length scale.
VOICES = [("espeak", "en-us", 150), ("espeak", "en-gb+f3", 145), ("espeak", "en-gb-scotland+m3", 160),
          ("espeak", "en-us+f4", 135), ("espeak", "en-029+m5", 150), ("piper", "1.0", 0), ("piper", "1.3", 0)]
NOISES = [None, 20.0, 10.0]


@dataclass(frozen=True)
class Clip:
    kind: str
    text: str
    voice: str
    snr: float | None
    half: str
    path: Path


def wilson(right: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    z, p = 1.96, right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - spread, centre + spread


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(size=n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, n)
    return noise / (noise.std() + 1e-12)


def with_noise(samples: np.ndarray, snr: float | None, seed: int) -> np.ndarray:
    if snr is None:
        return samples
    speech = samples.astype(np.float64)
    voiced = speech[np.abs(speech) > 0.05 * np.abs(speech).max()]
    level = math.sqrt(np.mean(voiced ** 2)) / (10 ** (snr / 20))
    noisy = speech + pink(len(speech), np.random.default_rng(seed)) * level
    return np.clip(noisy, -32768, 32767).astype(np.int16)


async def piper_clips(jobs: list[tuple[str, float, Path]]) -> None:
    from channels.voice.tts import PiperServer
    import httpx
    import io

    async with PiperServer() as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            for text, scale, path in jobs:
                response = await client.post("/synthesize", json={"text": text, "length_scale": scale})
                response.raise_for_status()
                samples, rate = read_wav(io.BytesIO(response.content))
                import wave

                with wave.open(str(path), "wb") as out:
                    out.setnchannels(1), out.setsampwidth(2), out.setframerate(rate)
                    out.writeframes(samples.tobytes())


def say(text: str, engine: str, voice: str, speed: int, path: Path, piper_jobs: list[tuple[str, float, Path]]) -> None:
    """`text` said into `path` once: espeak-ng now, Piper queued in `piper_jobs` (one server for all)."""
    if path.exists():
        return
    if engine == "espeak":
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    else:
        piper_jobs.append((text, float(voice), path))


def clips(cache: Path) -> list[Clip]:
    """Every clip of the set, synthesised into `cache` once (espeak-ng and Piper)."""
    cache.mkdir(parents=True, exist_ok=True)
    out: list[Clip] = []
    piper_jobs: list[tuple[str, float, Path]] = []
    n = 0
    for kind, texts in SETS.items():
        for i, text in enumerate(texts):
            for engine, voice, speed in VOICES:
                snr = NOISES[n % len(NOISES)]
                n += 1
                stem = f"{kind}-{i:02d}-{engine}-{voice.replace('+', '_')}"
                path = cache / f"{stem}.wav"
                say(text, engine, voice, speed, path, piper_jobs)
                out.append(Clip(kind, text, f"{engine}:{voice}", snr, "tune" if i % 2 == 0 else "test", path))
    if piper_jobs:
        asyncio.run(piper_clips(piper_jobs))
    return out


def phone_audio(clip: Clip, seed: int) -> np.ndarray:
    samples, rate = read_wav(clip.path)
    samples = resample(samples, rate, 16000)
    lead = np.zeros(3200, dtype=np.int16)  # the VAD keeps a little audio from before speech starts
    samples = with_noise(np.concatenate([lead, samples, lead]), clip.snr, seed)
    audio = for_recogniser(telephone(samples, 16000), 8000)
    return np.concatenate([audio, np.zeros(8000, np.float32)])  # pipecat pads each segment with 0.5 s


class Judge:
    """The value the restaurant worker takes from a turn's text, for the field asked."""

    def __init__(self) -> None:
        self.spec = load_spec(ROOT / "examples" / "restaurant_booking.yaml")
        self.extractor = build_extractor(self.spec)

    def value(self, kind: str, text: str) -> object:
        if kind == "yes_no":
            return yes_no(text)
        found = run_one(self.extractor, self.spec, ExtractRequest(text=text, requested=[kind], now=NOW))
        return (found["fields"].get(kind) or {}).get("value")

    def field(self, kind: str):  # noqa: ANN201
        return next((f for f in self.spec.fields if f.name == kind), None)


def before(recogniser: object, audio: np.ndarray) -> str:
    """The short path as it was before issue 18 (channels/voice/recogniser.py at 13cb5d7)."""
    from faster_whisper.transcribe import get_ctranslate2_storage

    whisper = recogniser._whisper  # type: ignore[attr-defined]
    encoded = whisper.model.model.encode(get_ctranslate2_storage(whisper.features(audio, 10)[None]), to_cpu=False)
    result = whisper.model.model.generate(encoded, [whisper.prompt], beam_size=5, max_length=120, return_scores=True,
                                          suppress_blank=True, suppress_tokens=[-1])[0]
    return whisper.tokenizer.decode([t for t in result.sequences_ids[0] if t < whisper.tokenizer.eot]).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--half", default="all", choices=["tune", "test", "all"])
    parser.add_argument("--modes", default="before,plain,context")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/voice_short"))
    parser.add_argument("--limit", type=int, default=0, help="at most this many clips (a quick look)")
    parser.add_argument("--kinds", default=",".join(SETS))
    parser.add_argument("--misses", action="store_true", help="print every miss")
    args = parser.parse_args()
    from channels.voice.recogniser import Recogniser

    judge = Judge()
    wanted = set(args.kinds.split(","))
    items = [c for c in clips(args.cache) if (args.half == "all" or c.half == args.half) and c.kind in wanted]
    if args.limit:
        items = items[:: max(1, len(items) // args.limit)][: args.limit]
    recogniser = Recogniser()
    modes = args.modes.split(",")
    truths = {}
    for c in items:
        truths[c.text] = judge.value(c.kind, c.text)
        assert truths[c.text] is not None, f"the extractor reads no value from the answer itself: {c.kind} {c.text!r}"
    results: dict[str, list[tuple[Clip, bool, float, str]]] = {m: [] for m in modes}
    recogniser.hear_now(phone_audio(items[0], 0))  # warm-up
    for n, clip in enumerate(items):
        audio = phone_audio(clip, n)
        for mode in modes:
            expect = None
            if mode != "plain":
                field = judge.field(clip.kind) if clip.kind != "yes_no" else None
                expect = expectation(field, QUESTIONS[clip.kind])
            began = time.perf_counter()
            if mode == "before":
                text = before(recogniser, audio)
            else:
                text = (recogniser.hear_now(audio, expect) if expect is not None else recogniser.hear_now(audio)).text
            seconds = time.perf_counter() - began
            right = judge.value(clip.kind, text) == truths[clip.text]
            results[mode].append((clip, right, seconds, text))
    name_list = set(names("first")) | set(names("last"))
    in_list = sum(n in name_list for n in FIRST + LAST)
    print(f"{len(items)} clips ({args.half} half): {len(VOICES)} voices, telephone path, clean/20 dB/10 dB; "
          f"names in the bundled list: {in_list} of {len(FIRST + LAST)}")
    print(f"{'mode':<9} {'kind':<11} {'n':>4} {'right':>7} {'95% CI':>13} {'p50 ms':>7} {'p95 ms':>7}")
    for mode in modes:
        rows = results[mode]
        for kind in [*[k for k in SETS if k in wanted], "overall"]:
            sub = [r for r in rows if kind == "overall" or r[0].kind == kind]
            if not sub:
                continue
            right = sum(r[1] for r in sub)
            low, high = wilson(right, len(sub))
            times = sorted(r[2] for r in sub)
            print(f"{mode:<9} {kind:<11} {len(sub):>4} {right / len(sub):>6.1%} {low:>6.1%}-{high:<6.1%}"
                  f"{statistics.median(times) * 1e3:>7.0f} {times[int(0.95 * (len(times) - 1))] * 1e3:>7.0f}")
        for half in ("tune", "test"):
            sub = [r for r in rows if r[0].half == half]
            if sub and args.half == "all":
                right = sum(r[1] for r in sub)
                low, high = wilson(right, len(sub))
                print(f"{mode:<9} {'half ' + half:<11} {len(sub):>4} {right / len(sub):>6.1%} {low:>6.1%}-{high:<6.1%}")
        for snr in NOISES:
            sub = [r for r in rows if r[0].snr == snr]
            if sub:
                print(f"{mode:<9} {'noise ' + (f'{snr:g} dB' if snr else 'none'):<11} {len(sub):>4} "
                      f"{sum(r[1] for r in sub) / len(sub):>6.1%}")
        echoes = sum(bool(re.search(r"\b(\w+(?:\W+\w+){0,2})\W+\1\b", r[3], re.I)) and not r[0].text.lower().count(" ") > 3
                     for r in rows)
        print(f"{mode:<9} {'repeats':<11} {len(rows):>4} {echoes / len(rows):>6.1%} of transcripts hold a run of 1-3 words twice in a row")
        misses = [r for r in rows if not r[1]]
        shown = misses if args.misses else misses[:12]
        print(f"  {mode} misses: " + "; ".join(f"{r[0].text!r}->{r[3]!r}" for r in shown))


if __name__ == "__main__":
    main()
