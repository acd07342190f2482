"""The real-model zoo's tasks: English requests with one exact answer each, generated in code.

A task draws an input (``make(rng) -> (input, answer)``) and puts it into one of its phrasings, a request
a person would type into a chat box ("Convert to snake_case: Big Red Apple"). The phrasings of ``cues`` are
used in training; ``heldout_cues`` are phrasings no adapter saw (for routing and eval of unseen wording).
Families (``first_words_k``, ``repeat_word_n``) have a number in their requests and mark one member
``held_out`` (the member generation methods must produce without having seen it).

Every answer is short (at most ~12 tokens), so a LoRA learns the exact format in a few dozen steps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from hub.core.errors import InvalidInputError, UnknownNameError
from testbed.tasks import Example, cues_of_split

__all__ = ["Example", "RealTask", "TASKS", "get_task", "number_words", "pig_latin_word"]

WORDS = tuple(
    "apple river stone cloud green quick brown table window garden silver music paper yellow ocean forest "
    "candle bridge winter summer orange rocket planet castle pencil mirror island falcon copper meadow "
    "thunder lemon velvet harbor marble shadow spring autumn violet tiger rabbit dragon pepper cotton "
    "anchor basket circle desert engine feather ginger hammer jacket kettle ladder magnet needle".split()
)
NAMES = ("Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Keiko", "Liam",
         "Maya", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara")
CITIES = ("Paris", "Lyon", "Berlin", "Madrid", "Rome", "Oslo", "Lisbon", "Vienna", "Prague", "Dublin", "Tokyo",
          "Lima", "Cairo", "Seoul", "Boston", "Denver")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORD = ("zero", "one", "two", "three", "four", "five", "six")


@dataclass(frozen=True)
class RealTask:
    """A task of the real zoo.

    Attributes:
        name: the adapter name (``smol/<name>``); letters, digits and ``_``.
        description: model-card prose of what the adapter does.
        tags: search tags.
        make: ``make(rng) -> (input, answer)``.
        cues: training phrasings, each with ``{x}`` where the input goes; ``heldout_cues``: never trained on.
        family, param, held_out: the parametric family, the member's number, and whether generation
            libraries leave this member out.
    """

    name: str
    description: str
    tags: tuple[str, ...]
    make: Callable[[random.Random], tuple[str, str]]
    cues: tuple[str, ...]
    heldout_cues: tuple[str, ...]
    family: str | None = None
    param: int | None = None
    held_out: bool = False

    def all_cues(self, split: str = "all") -> tuple[str, ...]:
        """Phrasings of a split: ``"train"``, ``"heldout"`` or ``"all"``."""
        return cues_of_split(self.cues, self.heldout_cues, split)

    def examples(self, n: int, seed: int, split: str = "train") -> list[Example]:
        """``n`` seeded examples whose phrasings come from ``split``."""
        rng = random.Random(f"real|{self.name}|{seed}|{split}")
        cues = self.all_cues(split)
        out = []
        for _ in range(n):
            x, y = self.make(rng)
            out.append(Example(self.name, x, rng.choice(cues).format(x=x), y))
        return out

    def score(self, prediction: str, target: str) -> bool:
        """Exact match (surrounding whitespace ignored)."""
        return prediction.strip() == target.strip()


# -- generators ---------------------------------------------------------------------------------
def _words(rng: random.Random, lo: int, hi: int) -> list[str]:
    return rng.sample(WORDS, rng.randint(lo, hi))


def number_words(n: int) -> str:
    """English words of ``0 <= n < 1000`` ("three hundred forty-two")."""
    if not 0 <= n < 1000:
        raise InvalidInputError(f"n must be in [0, 1000), got {n}")
    parts = []
    if n >= 100:
        parts.append(f"{_ONES[n // 100]} hundred")
        n %= 100
        if n == 0:
            return parts[0]
    if n < 20:
        parts.append(_ONES[n])
    else:
        parts.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    return " ".join(parts)


def _snake(rng: random.Random) -> tuple[str, str]:
    ws = _words(rng, 2, 4)
    shown = [w.capitalize() if rng.random() < 0.6 else w for w in ws]
    return " ".join(shown), "_".join(ws)


def _title(rng: random.Random) -> tuple[str, str]:
    ws = _words(rng, 2, 5)
    return " ".join(ws), " ".join(w.capitalize() for w in ws)


def _reverse(rng: random.Random) -> tuple[str, str]:
    ws = _words(rng, 3, 5)
    return " ".join(ws), " ".join(reversed(ws))


def _sort(rng: random.Random) -> tuple[str, str]:
    ws = _words(rng, 3, 5)
    return " ".join(ws), " ".join(sorted(ws))


def _digits(rng: random.Random) -> tuple[str, str]:
    n = rng.choice((rng.randint(0, 99), rng.randint(100, 999), rng.randint(100, 999)))
    return number_words(n), str(n)


def _date(rng: random.Random) -> tuple[str, str]:
    y, m, d = rng.randint(1950, 2030), rng.randint(1, 12), rng.randint(1, 28)
    name = MONTHS[m - 1]
    shown = rng.choice((f"{name} {d}, {y}", f"{d} {name} {y}", f"{name[:3]} {d}, {y}"))
    return shown, f"{y:04d}-{m:02d}-{d:02d}"


_UNITS = (("km", "meters", "m", 1000), ("m", "centimeters", "cm", 100), ("kg", "grams", "g", 1000),
          ("L", "milliliters", "mL", 1000))


def _units(rng: random.Random) -> tuple[str, str]:
    src, words, dst, factor = rng.choice(_UNITS)
    tenths = rng.randint(1, 99) if rng.random() < 0.5 else rng.randint(1, 50) * 10  # 0.1 .. 50
    value = str(tenths // 10) if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}"
    return f"{value} {src} to {words}", f"{tenths * factor // 10} {dst}"


def _json_field(rng: random.Random) -> tuple[str, str]:
    rec = {"name": rng.choice(NAMES), "city": rng.choice(CITIES), "age": rng.randint(18, 90),
           "color": rng.choice(("red", "blue", "green", "black", "white"))}
    keys = list(rec)
    rng.shuffle(keys)
    body = "{" + ", ".join(f'"{k}": ' + (str(rec[k]) if k == "age" else f'"{rec[k]}"') for k in keys) + "}"
    key = rng.choice(keys)
    return f'"{key}" from {body}', str(rec[key])


_POS = ("loved", "enjoyed", "adored", "was delighted by", "really liked")
_NEG = ("hated", "disliked", "was bored by", "regretted buying", "could not stand")
_POS_ADJ = ("great", "wonderful", "excellent", "charming", "brilliant")
_NEG_ADJ = ("awful", "terrible", "dull", "disappointing", "broken")
_THINGS = ("this movie", "the food", "the new phone", "this book", "the hotel", "the concert", "this game")


def _sentiment(rng: random.Random) -> tuple[str, str]:
    pos = rng.random() < 0.5
    verb = rng.choice(_POS if pos else _NEG)
    adj = rng.choice(_POS_ADJ if pos else _NEG_ADJ)
    thing = rng.choice(_THINGS)
    text = rng.choice((f"I {verb} {thing}, it was {adj}.", f"{thing.capitalize()} was {adj}; I {verb} it.",
                       f"Honestly {thing} was {adj}."))
    return text, "positive" if pos else "negative"


_TABLES = {"users": ("city", "age"), "orders": ("status", "total"), "books": ("author", "year")}
_VALUES = {"city": CITIES, "status": ("shipped", "pending", "cancelled"), "author": ("Austen", "Orwell", "Tolkien")}


def _sql(rng: random.Random) -> tuple[str, str]:
    table = rng.choice(sorted(_TABLES))
    text_col, num_col = _TABLES[table]
    kind = rng.randrange(3)
    if kind == 0:
        v = rng.choice(_VALUES[text_col])
        return (f"How many {table} have {text_col} {v}?",
                f"SELECT COUNT(*) FROM {table} WHERE {text_col} = '{v}';")
    n = rng.randint(2, 99) if num_col != "year" else rng.randint(1900, 2020)
    if kind == 1:
        return f"List all {table} with {num_col} above {n}.", f"SELECT * FROM {table} WHERE {num_col} > {n};"
    return f"List all {table} with {num_col} below {n}.", f"SELECT * FROM {table} WHERE {num_col} < {n};"


def pig_latin_word(w: str) -> str:
    """Pig Latin of one lower-case word: a leading consonant cluster moves to the end + "ay"; vowels + "way"."""
    if w[0] in "aeiou":
        return w + "way"
    i = next((k for k, c in enumerate(w) if c in "aeiou"), len(w))
    return w[i:] + w[:i] + "ay"


def _pig(rng: random.Random) -> tuple[str, str]:
    ws = _words(rng, 1, 2)
    return " ".join(ws), " ".join(pig_latin_word(w) for w in ws)


def _acronym(rng: random.Random) -> tuple[str, str]:
    ws = _words(rng, 2, 4)
    return " ".join(ws), "".join(w[0].upper() for w in ws)


def _email(rng: random.Random) -> tuple[str, str]:
    name, dom = rng.choice(NAMES).lower(), rng.choice(("example.com", "mail.org", "work.net", "uni.edu"))
    addr = f"{name}.{rng.choice(WORDS)}@{dom}"
    text = rng.choice((f"Please write to {addr} before Friday.", f"Contact {rng.choice(NAMES)} at {addr} for details.",
                       f"My address is {addr}, thanks!"))
    return text, addr


def _first_words(k: int) -> Callable[[random.Random], tuple[str, str]]:
    def make(rng: random.Random) -> tuple[str, str]:
        ws = _words(rng, k + 1, k + 3)
        return " ".join(ws), " ".join(ws[:k])

    return make


def _repeat(n: int) -> Callable[[random.Random], tuple[str, str]]:
    def make(rng: random.Random) -> tuple[str, str]:
        w = rng.choice(WORDS)
        return w, " ".join([w] * n)

    return make


def _build() -> dict[str, RealTask]:
    ts = [
        RealTask("snake_case", "Converts a phrase to snake_case: lower-case words joined by underscores, as used "
                 "for Python variable names.", ("case", "code", "formatting"), _snake,
                 ("Convert to snake_case: {x}", "Write this as a snake_case identifier: {x}",
                  "snake_case please: {x}"),
                 ("Turn {x} into a python variable name",)),
        RealTask("title_case", "Capitalises the first letter of every word (title case), as in headlines and book "
                 "titles.", ("case", "formatting"), _title,
                 ("Title-case this: {x}", "Capitalize every word: {x}", "Write in title case: {x}"),
                 ("Make a headline out of: {x}",)),
        RealTask("reverse_words", "Reverses the order of the words in a sentence; the words themselves are kept.",
                 ("order", "words"), _reverse,
                 ("Reverse the word order: {x}", "Write these words backwards, last word first: {x}",
                  "Flip the order of the words: {x}"),
                 ("Say it in reverse order: {x}",)),
        RealTask("sort_words", "Sorts words alphabetically (A to Z) and lists them separated by spaces.",
                 ("order", "words"), _sort,
                 ("Sort these words alphabetically: {x}", "Put in alphabetical order: {x}",
                  "Alphabetize: {x}"),
                 ("Arrange from A to Z: {x}",)),
        RealTask("number_to_digits", "Turns a number written in English words into digits (three hundred "
                 "forty-two becomes 342).", ("numbers", "parsing"), _digits,
                 ("Write as digits: {x}", "What is {x} in numerals?", "Convert the number words to digits: {x}"),
                 ("Give the number {x} as figures",)),
        RealTask("date_iso", "Normalises a written date (March 5, 2021 or 5 March 2021) to ISO 8601 "
                 "(2021-03-05).", ("dates", "parsing", "formatting"), _date,
                 ("Normalize this date to ISO format: {x}", "Convert to YYYY-MM-DD: {x}",
                  "ISO 8601 date for {x}?"),
                 ("Rewrite {x} as year-month-day",)),
        RealTask("unit_convert", "Converts metric quantities to a smaller unit: kilometres to metres, metres to "
                 "centimetres, kilograms to grams, litres to millilitres.", ("units", "numbers"), _units,
                 ("Convert {x}.", "How much is {x}?", "Unit conversion: {x}"),
                 ("Express {x}, please",)),
        RealTask("json_field", "Extracts the value of one field from a JSON object and prints it bare.",
                 ("json", "extraction", "code"), _json_field,
                 ("Extract the value of {x}", "Give me the field {x}", "What is the value of field {x}?"),
                 ("Read the key {x}",)),
        RealTask("sentiment", "Labels the sentiment of a short review: positive or negative.",
                 ("classification", "sentiment"), _sentiment,
                 ("Is this review positive or negative? {x}", "Sentiment of: {x}", "Classify the sentiment: {x}"),
                 ("Did the writer like it? {x}",)),
        RealTask("text_to_sql", "Writes a SQL query for a question about the users, orders or books tables.",
                 ("sql", "code"), _sql,
                 ("Write a SQL query: {x}", "SQL for: {x}", "Translate into SQL: {x}"),
                 ("Give me the database query: {x}",)),
        RealTask("pig_latin", "Translates words into Pig Latin: a leading consonant cluster moves to the end and "
                 "gets 'ay' (hello becomes ellohay), words starting with a vowel get 'way'.",
                 ("language", "fun"), _pig,
                 ("Translate to Pig Latin: {x}", "Pig Latin for: {x}", "Say this in Pig Latin: {x}"),
                 ("Encode {x} in pig latin",)),
        RealTask("acronym", "Makes an acronym from the first letter of every word, in capitals.",
                 ("words", "abbreviation"), _acronym,
                 ("Give the acronym for: {x}", "Acronym of: {x}", "Abbreviate with initials: {x}"),
                 ("What are the initials of {x}?",)),
        RealTask("extract_email", "Finds the e-mail address in a sentence and returns it alone.",
                 ("extraction", "email"), _email,
                 ("Find the email address in: {x}", "Extract the email: {x}", "Which email is mentioned? {x}"),
                 ("Pull out the address from: {x}",)),
    ]
    for k in range(1, 5):
        w, s = _ORD[k], "s" if k > 1 else ""
        ts.append(RealTask(
            f"first_words_{k}", f"Keeps only the first {k} word{s} of a text and drops the rest.",
            ("words", "truncation", f"first-{k}"), _first_words(k),
            (f"Keep only the first {k} word{s}: {{x}}", f"First {w} word{s} of: {{x}}" if k > 1 else "First word of: {x}",
             f"Truncate to {k} word{s}: {{x}}"),
            (f"Cut everything after word {w}: {{x}}",), family="first_words", param=k, held_out=k == 3))
    for n in range(2, 5):
        w = _ORD[n]
        ts.append(RealTask(
            f"repeat_word_{n}", f"Repeats the given word {n} times, separated by spaces.",
            ("words", "repeat", f"times-{n}"), _repeat(n),
            (f"Repeat the word {n} times: {{x}}", f"Say {{x}} {w} times", f"Write {{x}} {n} times"),
            (f"{w.capitalize()} times, please: {{x}}",), family="repeat_word", param=n, held_out=n == 3))
    return {t.name: t for t in ts}


TASKS: dict[str, RealTask] = _build()


def get_task(name: str) -> RealTask:
    """The real task called ``name``; an unknown name lists the ones that exist."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownNameError(f"unknown real task {name!r}; known: {', '.join(TASKS)}") from None
