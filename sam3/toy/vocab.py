"""The vocabulary of shapes world v2: attribute values, the words that name them, and phrases.

An instance has one value of each attribute, in natural word order:

    size    small / large                         ("small", "tiny", "little" / "large", "big", "huge")
    fill    solid / hollow (outlined)             ("solid", "filled" / "hollow", "empty")
    colour  red, orange, yellow, green, teal, blue, purple, pink   (two trained words each)
    shape   circle, square, triangle, star, heart, cross           (a word and a plural or synonym)

Every trained word is a single CLIP token (checked by the tests). Each attribute value also has
*reserved* words that sam3-toy v2 never sees in training (the *renamed* variant's names), generic
nouns ("shape", "objects") name every instance, and ``DISTRACTORS`` are common English words
unrelated to the world, trained as absent (presence 0). With the generic nouns that makes
``len(TRAINED_WORDS)`` >= 300, so a concept's words are not the only trained rows of the
token-embedding table.

A *clause* is a partial assignment of attribute values (``{"colour": "red", "shape": "circle"}``);
it matches an instance whose attributes agree on every attribute it names. A phrase names a clause.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

ATTRIBUTES: tuple[str, ...] = ("size", "fill", "colour", "shape")  # natural word order
VALUES: dict[str, tuple[str, ...]] = {
    "size": ("small", "large"),
    "fill": ("solid", "hollow"),
    "colour": ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink"),
    "shape": ("circle", "square", "triangle", "star", "heart", "cross"),
}

# trained words per (attribute, value); the first is the canonical word (oracle names use it)
WORDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("size", "small"): ("small", "tiny", "little"),
    ("size", "large"): ("large", "big", "huge"),
    ("fill", "solid"): ("solid", "filled"),
    ("fill", "hollow"): ("hollow", "empty"),
    ("colour", "red"): ("red", "scarlet"),
    ("colour", "orange"): ("orange", "tangerine"),
    ("colour", "yellow"): ("yellow", "lemon"),
    ("colour", "green"): ("green", "lime"),
    ("colour", "teal"): ("teal", "turquoise"),
    ("colour", "blue"): ("blue", "navy"),
    ("colour", "purple"): ("purple", "violet"),
    ("colour", "pink"): ("pink", "rose"),
    ("shape", "circle"): ("circle", "circles"),
    ("shape", "square"): ("square", "squares"),
    ("shape", "triangle"): ("triangle", "pyramid"),
    ("shape", "star"): ("star", "stars"),
    ("shape", "heart"): ("heart", "hearts"),
    ("shape", "cross"): ("cross", "crosses"),
}
PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "star": "stars",
    "heart": "hearts",
    "cross": "crosses",
}

# never trained: the renamed variant names categories with these (first word used)
RESERVED: dict[tuple[str, str], tuple[str, ...]] = {
    ("size", "small"): ("mini",),
    ("size", "large"): ("giant", "massive"),
    ("fill", "solid"): ("full",),
    ("fill", "hollow"): ("framed",),
    ("colour", "red"): ("crimson",),
    ("colour", "orange"): ("amber",),
    ("colour", "yellow"): ("golden",),
    ("colour", "green"): ("emerald",),
    ("colour", "teal"): ("aqua",),
    ("colour", "blue"): ("azure",),
    ("colour", "purple"): ("lavender",),
    ("colour", "pink"): ("magenta",),
    ("shape", "circle"): ("disc",),
    ("shape", "square"): ("tile",),
    ("shape", "triangle"): ("wedge",),
    ("shape", "star"): ("spark",),
    ("shape", "heart"): ("valentine",),
    ("shape", "cross"): ("plus",),
}

GENERIC: tuple[str, ...] = ("shape", "shapes", "object", "objects", "thing", "things", "item", "items")

# common nouns and adjectives with nothing to do with the world (each one CLIP token)
DISTRACTORS: tuple[str, ...] = tuple(
    """
    dog cat horse cow sheep bird fish mouse rabbit lion tiger bear wolf fox deer monkey elephant snake
    frog duck chicken pig goat car truck bus train plane boat ship bike bicycle motorcycle taxi tractor
    rocket house home building church school hospital bank hotel office shop store market bridge tower
    castle farm garden park tree flower grass leaf forest mountain river lake ocean sea beach island
    desert valley hill rock stone sand snow rain cloud wind storm sun moon sky water fire ice apple
    banana bread cheese cake pizza burger sandwich soup rice pasta coffee tea milk juice wine beer
    sugar salt pepper butter egg chair table bed sofa desk lamp door window wall floor roof kitchen
    bathroom bedroom phone laptop camera television radio clock watch keyboard screen book paper pen
    pencil letter magazine newspaper map shirt shoe hat coat jacket dress pants sock glove man woman
    child baby boy girl friend family teacher doctor nurse farmer king queen soldier police city town
    village country street road highway airport station music song dance movie game sport football
    soccer tennis golf money price business job work happy sad angry funny quiet loud fast slow hot
    cold warm cool wet dry clean dirty new old young rich poor strong weak cheap expensive easy hard
    soft heavy sweet sour fresh beautiful ugly pretty nice bad good great best early late busy lazy
    brave calm crazy famous honest lucky proud rude shy smart wild wise guitar piano violin drum
    trumpet lawyer artist writer singer actor chef pilot winter summer autumn morning night evening
    afternoon today tomorrow yesterday week month year hour minute carpet pillow blanket towel soap
    mirror bottle cup glass plate fork knife spoon bowl hammer nail rope chain wire pipe tool tooth
    hair hand foot leg arm eye ear nose mouth face head finger knee shoulder tunnel fence gate cotton
    wool silk leather wood metal plastic science history math language art army war peace law court
    honey candy cookie chocolate engine wheel seat ticket passport luggage picnic party wedding
    birthday holiday vacation
    """.split()  # noqa: SIM905  (a word list, kept compact)
)

ATTRIBUTE_WORDS: tuple[str, ...] = tuple(w for ws in WORDS.values() for w in ws)
TRAINED_WORDS: tuple[str, ...] = ATTRIBUTE_WORDS + GENERIC + DISTRACTORS
RESERVED_WORDS: tuple[str, ...] = tuple(w for ws in RESERVED.values() for w in ws)

Clause = Mapping[str, str]  # attribute -> value, any non-empty subset of ATTRIBUTES


def matches(clause: Clause, attrs: Mapping[str, str]) -> bool:
    """Whether an instance with attributes ``attrs`` (all four) satisfies ``clause``."""
    return all(attrs[a] == v for a, v in clause.items())


def phrase(
    clause: Clause,
    words: str = "trained",
    rng: np.random.Generator | None = None,
    p_plural: float = 0.3,
    p_generic: float = 0.3,
) -> str:
    """The words of a clause in natural order (size, fill, colour, shape).

    Args:
        clause: the attribute values to name (at least one).
        words: "trained" (canonical training words) or "reserved" (never-trained words).
        rng: when given, a random trained synonym per value, the shape's plural with ``p_plural``,
            and, for a clause without a shape, a trailing generic noun with ``p_generic``.
    Returns:
        the phrase, e.g. "small hollow red circle".
    """
    if not clause:
        raise ValueError("a clause names at least one attribute")
    table = RESERVED if words == "reserved" else WORDS
    out = []
    for attr in ATTRIBUTES:
        if attr not in clause:
            continue
        options = table[(attr, clause[attr])]
        if rng is None or words == "reserved":
            out.append(options[0])
            continue
        word = options[int(rng.integers(len(options)))]
        if attr == "shape" and word in PLURALS and rng.random() < p_plural:
            word = PLURALS[word]
        out.append(word)
    if rng is not None and "shape" not in clause and rng.random() < p_generic:
        out.append(GENERIC[int(rng.integers(len(GENERIC)))])
    return " ".join(out)


def random_attrs(rng: np.random.Generator) -> dict[str, str]:
    """A uniformly random full assignment (one value per attribute)."""
    return {a: VALUES[a][int(rng.integers(len(VALUES[a])))] for a in ATTRIBUTES}


def completion(clause: Clause, rng: np.random.Generator) -> dict[str, str]:
    """A full assignment that satisfies ``clause``, the other attributes drawn uniformly."""
    return {**random_attrs(rng), **clause}
