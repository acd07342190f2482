"""The task zoo: string-to-string tasks with model-card descriptions, cues and exact-match metrics.

Every task maps an input string to one exact output. A prompt is ``"<input> | <cue>"`` where the cue
names the task the way a person would ("shout this", "in capitals"). Each task has several training
cues and a few *held-out* cues that no adapter sees in training, for routing and eval of unseen
phrasings. Parametric families ("shift every letter k places forward", "add k to every digit",
"repeat each character n times", "mask the first k characters") mark some members ``held_out`` so generation methods can be judged
on members they never saw. Composite prompts chain 2-3 tasks in one request.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from hub.core.errors import InvalidInputError, UnknownNameError

LETTERS = string.ascii_letters
ALPHABET = string.ascii_letters + string.digits + ".,!?-@"
VOWELS = set("aeiouAEIOU")
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_NUM_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class Example:
    """One prompt with its expected answer."""

    task: str
    input: str
    prompt: str
    output: str


@dataclass(frozen=True)
class Task:
    """A zoo task.

    Attributes:
        name: short id, also the adapter name (``zoo/<name>``); letters, digits and ``_`` only.
        description: model-card prose of what an adapter for this task does.
        tags: search tags.
        fn: the reference function input -> output.
        cues: training phrasings; ``heldout_cues``: phrasings never used in training.
        min_size: ``"ci"`` if the 2-layer ci base can learn it, ``"full"`` for positional tasks.
        family, param: the parametric family and the member's number, if any.
        held_out: a family member kept out of generation libraries (interpolation target).
        transfer: also trained on the second base (cross-base transfer is judged on it).
        digits: inputs are digit-heavy (tasks that only touch digits).
        max_len: longest input generated.
    """

    name: str
    description: str
    tags: tuple[str, ...]
    fn: Callable[[str], str]
    cues: tuple[str, ...]
    heldout_cues: tuple[str, ...]
    min_size: str = "ci"
    family: str | None = None
    param: int | None = None
    held_out: bool = False
    transfer: bool = False
    digits: bool = False
    max_len: int = 8
    composable: bool = True
    extra: dict = field(default_factory=dict, compare=False)

    def all_cues(self, split: str = "all") -> tuple[str, ...]:
        """Cues of a split: ``"train"``, ``"heldout"`` or ``"all"``."""
        return cues_of_split(self.cues, self.heldout_cues, split)

    def random_input(self, rng: random.Random) -> str:
        """An input whose answer differs from the input itself (so copying scores zero)."""
        for _ in range(1000):
            n = rng.randint(3, self.max_len)
            if self.digits:
                x = "".join(
                    rng.choice(string.digits) if rng.random() < 0.6 else rng.choice(ALPHABET)
                    for _ in range(n)
                )
            else:
                x = "".join(rng.choice(ALPHABET) for _ in range(n))
            if self.fn(x) != x:
                return x
        raise RuntimeError(f"task {self.name}: could not draw an input it changes")

    def examples(self, n: int, seed: int, split: str = "train") -> list[Example]:
        """``n`` seeded examples whose cues come from ``split``."""
        rng = random.Random(f"{self.name}|{seed}|{split}")
        cues = self.all_cues(split)
        out = []
        for _ in range(n):
            x = self.random_input(rng)
            out.append(Example(self.name, x, format_prompt(x, rng.choice(cues)), self.fn(x)))
        return out

    def samples(self, n: int, seed: int) -> list[Example]:
        """``n`` seeded examples for an adapter's ``samples.jsonl`` that use every training cue when ``n`` allows
        (the cues in a seeded order, round robin). The hub trains routers and scores merges on these rows, and a
        router never trained on a phrasing does not route it (5 rows drawn at random left cues out)."""
        rng = random.Random(f"{self.name}|{seed}|samples")
        cues = list(self.cues)
        rng.shuffle(cues)
        out = []
        for i in range(n):
            x = self.random_input(rng)
            out.append(Example(self.name, x, format_prompt(x, cues[i % len(cues)]), self.fn(x)))
        return out

    def score(self, prediction: str, target: str) -> bool:
        """Exact match (surrounding whitespace ignored)."""
        return prediction.strip() == target.strip()


def cues_of_split(cues: tuple[str, ...], heldout: tuple[str, ...], split: str) -> tuple[str, ...]:
    """The phrasings of a split: ``"train"`` (``cues``), ``"heldout"`` or ``"all"`` (both)."""
    if split == "train":
        return cues
    if split == "heldout":
        return heldout
    if split == "all":
        return cues + heldout
    raise InvalidInputError(f"split must be 'train', 'heldout' or 'all', got {split!r}")


def format_prompt(x: str, cue: str) -> str:
    """The prompt text for input ``x`` and a task cue: ``"hello | shout this"``.

    The input comes first: the tiny bases copy reliably from the start of the sequence, and the cue
    sits right before the answer where an adapter or a router reads it.
    """
    return f"{x} | {cue}"


def _map(table: Callable[[str], str]) -> Callable[[str], str]:
    return lambda s: "".join(table(c) for c in s)


def _caesar(k: int) -> Callable[[str], str]:
    def f(c: str) -> str:
        if c.islower():
            return chr((ord(c) - 97 + k) % 26 + 97)
        if c.isupper():
            return chr((ord(c) - 65 + k) % 26 + 65)
        return c

    return _map(f)


def _digit_add(k: int) -> Callable[[str], str]:
    return _map(lambda c: str((int(c) + k) % 10) if c.isdigit() else c)


def _atbash(c: str) -> str:
    if c.islower():
        return chr(219 - ord(c))
    if c.isupper():
        return chr(155 - ord(c))
    return c


def _word(k: int) -> str:
    return _NUM_WORDS[k] if k < 10 else str(k)


def _build() -> dict[str, Task]:
    ts: list[Task] = [
        Task(
            "upper",
            "Rewrites text in upper case: every lower-case letter becomes its capital; digits and "
            "punctuation are left alone. Useful for headlines and shouting.",
            ("case", "mapping"),
            str.upper,
            ("shout this", "in capitals", "uppercase", "make it all caps"),
            ("caps lock on", "write it in block letters"),
            transfer=True,
        ),
        Task(
            "lower",
            "Rewrites text in lower case: every capital letter becomes its small letter, everything "
            "else unchanged. Handy to normalise case before comparing strings.",
            ("case", "mapping"),
            str.lower,
            ("lowercase", "in small letters", "no capitals", "make it quiet"),
            ("whisper this", "drop the caps"),
        ),
        Task(
            "swapcase",
            "Inverts the case of every letter: capitals become small letters and small letters "
            "become capitals. Digits and punctuation stay as they are.",
            ("case", "mapping"),
            str.swapcase,
            ("swap the case", "invert capitalisation", "flip upper and lower", "toggle case"),
            ("reverse the casing", "switch case of each letter"),
        ),
        Task(
            "leetspeak",
            "Translates text into leetspeak: a becomes 4, e becomes 3, i becomes 1, o becomes 0, "
            "s becomes 5 and t becomes 7 (lower-case letters only).",
            ("cipher", "mapping", "fun"),
            _map(lambda c: LEET.get(c, c)),
            ("leetspeak", "in leet", "h4x0r style", "1337 speak"),
            ("write it like a hacker", "leetify"),
            transfer=True,
        ),
        Task(
            "vowel_mask",
            "Masks vowels: every a, e, i, o or u, in either case, is replaced by an asterisk. "
            "Consonants, digits and punctuation are kept.",
            ("masking", "mapping"),
            _map(lambda c: "*" if c in VOWELS else c),
            ("mask the vowels", "star out vowels", "hide vowels", "replace vowels with *"),
            ("censor the vowels", "vowels to asterisks"),
            transfer=True,
        ),
        Task(
            "digit_mask",
            "Redacts numbers: every digit is replaced by #, letters and punctuation are kept. "
            "A quick way to hide phone numbers and codes.",
            ("masking", "mapping", "digits"),
            _map(lambda c: "#" if c.isdigit() else c),
            ("redact the digits", "hide the numbers", "mask digits", "digits to #"),
            ("censor numbers", "blank out every digit"),
            digits=True,
        ),
        Task(
            "atbash",
            "Atbash cipher: mirrors the alphabet so a becomes z, b becomes y and so on, keeping "
            "case. Applying it twice gives the original text back.",
            ("cipher", "mapping"),
            _map(_atbash),
            ("atbash", "mirror the alphabet", "atbash cipher", "a to z, z to a"),
            ("flip the alphabet", "encode with atbash"),
        ),
    ]
    for k in range(1, 6):
        w = _word(k)
        ts.append(
            Task(
                f"caesar_{k}",
                f"Caesar cipher that shifts every letter {k} places forward in the alphabet "
                f"(wrapping z to a), keeping case; digits and punctuation unchanged.",
                ("cipher", "caesar", "mapping", f"shift-{k}"),
                _caesar(k),
                (
                    f"shift every letter {k} places forward",
                    f"caesar shift by {k}",
                    f"move each letter {w} step{'s' if k > 1 else ''} along the alphabet",
                    f"encode with a shift of {k}",
                ),
                (f"advance letters by {k}", f"rotate the alphabet {w} forward"),
                family="caesar",
                param=k,
                held_out=(k == 3),
                transfer=(k == 1),
            )
        )
    for k in range(1, 6):
        w = _word(k)
        ts.append(
            Task(
                f"digit_add_{k}",
                f"Adds {k} to every digit, modulo 10 (so 9 becomes {(9 + k) % 10}); letters and "
                f"punctuation are left alone. A toy cipher for numeric codes.",
                ("digits", "arithmetic", "mapping", f"add-{k}"),
                _digit_add(k),
                (
                    f"add {k} to every digit",
                    f"increase each digit by {w}",
                    f"digits plus {k}",
                    f"bump the numbers by {k}",
                ),
                (f"raise every digit by {k}", f"count each digit {w} up"),
                family="digit_add",
                param=k,
                held_out=(k == 3),
                digits=True,
            )
        )
    for k in range(1, 6):
        w, s_ = _word(k), "s" if k > 1 else ""
        ts.append(
            Task(
                f"mask_first_{k}",
                f"Masks the first {k} character{s_} of the text with asterisks (a shorter text is masked "
                f"entirely); the rest is kept as is.",
                ("masking", "positional", f"first-{k}"),
                lambda x, k=k: "*" * min(k, len(x)) + x[k:],
                (
                    f"mask the first {k} characters",
                    f"star out the first {w} character{s_}",
                    f"hide the first {k} symbols",
                    f"first {k} to *",
                ),
                (f"censor the first {w} character{s_}", f"blank the opening {k} characters"),
                family="mask_first",
                param=k,
                # the interpolation target of the generation benchmark: k enters these adapters like a threshold
                # that moves smoothly in weight space (measured on the ci base: the mean of the k=2 and k=4
                # LoRAs scores 86-100% on k=3 over 9 seeds, the nearest member 0-12%), unlike caesar_k
                held_out=(k == 3),
                composable=False,  # keeps the composite eval sets of the other tasks as they were
            )
        )
    ts.append(
        Task(
            "reverse",
            "Reverses the text: the last character comes first. Works on any characters; "
            "reading the output backwards gives the input.",
            ("positional", "order"),
            lambda s: s[::-1],
            ("reverse this", "write it backwards", "mirror the text", "right to left"),
            ("backwards please", "flip the order of characters"),
            min_size="full",
            transfer=True,
            composable=False,
        )
    )
    for n in range(2, 5):
        w = _word(n)
        ts.append(
            Task(
                f"repeat_{n}",
                f"Repeats each character {n} times in place, so 'ab' becomes "
                f"'{'a' * n}{'b' * n}'. Stretches text for emphasis.",
                ("positional", "repeat", f"times-{n}"),
                _map(lambda c, n=n: c * n),
                (
                    f"repeat each character {n} times",
                    f"say every letter {w} times",
                    f"stretch by {n}",
                    f"{n}x each char",
                ),
                (f"write each symbol {n} times", f"multiply every character by {w}"),
                min_size="full",
                family="repeat",
                param=n,
                held_out=(n == 3),
                # answers of at most 20 characters, the longest the base pre-trained on (its "double" op of
                # 10): measured on the 2M full base, repeat_4 of 6-character inputs (24) ran past the end
                # 14/24 right vs 74/76 for inputs of 3-5
                max_len=min(6, 20 // n),
                composable=False,
            )
        )
    return {t.name: t for t in ts}


TASKS: dict[str, Task] = _build()
SIZES = ("ci", "full")


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name lists the ones that exist."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownNameError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def tasks_for(size: str) -> list[Task]:
    """Tasks a base of ``size`` can learn (``ci`` skips the positional ones)."""
    if size not in SIZES:
        raise InvalidInputError(f"size must be one of {SIZES}, got {size!r}")
    return [t for t in TASKS.values() if size == "full" or t.min_size == "ci"]


def composite_examples(n: int, k: int, seed: int, size: str = "ci", split: str = "all") -> list[Example]:
    """Prompts that chain ``k`` (2 or 3) tasks, applied left to right, with their expected outputs.

    The prompt reads ``"<input> | <cue 1>, then <cue 2>"``; the task field is ``composite<k>``.
    """
    if k not in (2, 3):
        raise InvalidInputError(f"composite chain length must be 2 or 3, got {k}")
    pool = [t for t in tasks_for(size) if t.composable and not t.held_out]
    rng = random.Random(f"composite|{k}|{seed}|{split}")
    out: list[Example] = []
    while len(out) < n:
        chain = rng.sample(pool, k)
        x = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(4, 8)))
        y = x
        steps = []
        for t in chain:
            y = t.fn(y)
            steps.append(y)
        if len(set([x, *steps])) != k + 1:  # every step must change the text
            continue
        cues = ", then ".join(rng.choice(t.all_cues(split)) for t in chain)
        out.append(Example(f"composite{k}", x, format_prompt(x, cues), y))
    return out


def composite_tasks(n: int, seed: int, size: str = "ci") -> dict[str, list[Example]]:
    """``{"composite2": [...], "composite3": [...]}`` with ``n`` examples each."""
    return {f"composite{k}": composite_examples(n, k, seed, size) for k in (2, 3)}
