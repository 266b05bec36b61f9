"""The voice channel's speech path, measured. So far: spoken digits.

    .venv/bin/python bench/voice.py [--numbers 100] [--data ../shared/data] [--seed 7]

Spoken digits: 6-digit account numbers made by joining real recordings of single digits from
the Free Spoken Digit Dataset (two speakers, 8 kHz), with a short pause between digits, put
through the telephone path of a call (8 kHz G.711 mu-law, up to 16 kHz) and recognised by the
bundled Whisper tiny.en. Prints the share of numbers read exactly right:

  baseline   the recogniser's text with each digit word mapped to its digit
  worker     what `channel-worker transcribe --field account_number` does: sound-alikes
             beside digits count as digits ("to" 2, "for" 4, "oh" 0), "double five" is 55,
             then the account_support worker's digits extractor

and the recogniser's time per number. Same audio, same model, same run.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.voice.audio import for_recogniser, read_wav, telephone  # noqa: E402
from channels.voice.digits import DIGIT_WORDS, spoken_digits  # noqa: E402
from channels.voice.recogniser import Recogniser  # noqa: E402
from dialogue.spec_loader import load_spec  # noqa: E402
from extraction.cli_io import ExtractRequest, run_one  # noqa: E402
from extraction.factory import build_extractor  # noqa: E402


def joined_number(recordings: dict[int, list[Path]], digits: list[int], rng: random.Random) -> np.ndarray:
    parts = [np.zeros(2400, dtype=np.int16)]
    for digit in digits:
        samples, rate = read_wav(rng.choice(recordings[digit]))
        assert rate == 8000
        parts += [samples, np.zeros(int(0.12 * rate), dtype=np.int16)]
    return np.concatenate(parts)


def word_map(text: str) -> str:
    return "".join(t if t.isdigit() else DIGIT_WORDS.get(t, "") for t in re.findall(r"\d|[a-z]+", text.lower()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numbers", type=int, default=100)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    files = sorted((args.data / "fsdd").glob("*.wav"))
    if not files:
        sys.exit(f"no recordings in {args.data / 'fsdd'}")
    recordings = {d: [f for f in files if f.name.startswith(f"{d}_")] for d in range(10)}
    rng = random.Random(args.seed)
    spec = load_spec(ROOT / "examples" / "account_support.yaml")
    extractor = build_extractor(spec)
    recogniser = Recogniser()
    baseline_right = worker_right = 0
    seconds: list[float] = []
    misses: list[tuple[str, str]] = []
    for _ in range(args.numbers):
        digits = [rng.randrange(10) for _ in range(6)]
        truth = "".join(map(str, digits))
        audio = for_recogniser(telephone(joined_number(recordings, digits, rng), 8000), 8000)
        t0 = time.perf_counter()
        heard = recogniser.hear_now(audio)
        seconds.append(time.perf_counter() - t0)
        baseline_right += word_map(heard.text) == truth
        found = run_one(extractor, spec, ExtractRequest(text=spoken_digits(heard.text), requested=["account_number"]))
        value = (found["fields"].get("account_number") or {}).get("value")
        worker_right += value == truth
        if value != truth:
            misses.append((truth, heard.text))
    n = args.numbers
    print(f"{n} six-digit numbers from {len(files)} FSDD recordings, telephone path, Whisper tiny.en (bundled)")
    print(f"{'reading':<10} {'exactly right':>14}")
    print(f"{'baseline':<10} {baseline_right / n:>13.1%}")
    print(f"{'worker':<10} {worker_right / n:>13.1%}")
    print(f"recogniser time per number: median {statistics.median(seconds) * 1e3:.0f} ms, "
          f"p95 {sorted(seconds)[int(0.95 * (n - 1))] * 1e3:.0f} ms")
    print("some misses (truth: heard):", "; ".join(f"{t}: {h!r}" for t, h in misses[:6]))


if __name__ == "__main__":
    main()
