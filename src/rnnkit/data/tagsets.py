"""Brown corpus tags -> the 12 universal tags of Petrov, Das & McDonald (2012), ``en-brown.map``.

The universal tagset: ``VERB NOUN PRON ADJ ADV ADP CONJ DET NUM PRT X .`` (``.`` = punctuation).

The Brown tagset (472 distinct tags in the NLTK ``word/tag`` version, upper-cased as NLTK does) builds
compound tags from ~85 base tags. :func:`brown_to_universal` reduces a tag to its base, then looks the
base up in :data:`BROWN_BASE`:

* ``FW-`` (foreign word) prefix: always ``X``, whatever follows (``FW-NN``, ``FW-IN+AT``), as in
  ``en-brown.map``.
* ``-TL`` (title), ``-HL`` (headline), ``-NC`` (cited word) suffixes are dropped, also stacked
  (``NN-TL-HL``) and cut short as in a few corpus tags (``FW-IN+AT-T``, ``PPSS+BER-N``):
  ``NN-TL`` -> ``NN``, ``VBD-HL`` -> ``VBD``.
* ``*`` negation suffix is dropped (``BEDZ*`` "wasn't" -> ``BEDZ`` -> VERB); the bare tag ``*`` ("not",
  "n't") is ADV.
* ``$`` possessive suffix is dropped (``NN$`` -> ``NN``), except the possessive forms listed in
  :data:`BROWN_SPECIAL` and the base tags that end in ``$`` themselves (``PP$`` "his", ``PP$$`` "hers",
  ``WP$`` "whose").
* ``+`` joins the tags of a contraction or fused word. ``en-brown.map`` makes a subject or adverb fused
  with a following verb a particle (``PPS+BEZ`` "it's", ``EX+BEZ`` "there's", ``PPSS+MD`` "I'll",
  ``WRB+DOD`` "how'd", ``RB+BEZ`` "here's" -> PRT); any other compound takes the tag of its first part
  (``VB+PPO`` "let's" -> VERB, ``IN+PPO`` -> ADP, ``JJR+CS`` -> ADJ), except those in
  :data:`BROWN_SPECIAL`.

The rules reproduce ``en-brown.map`` for all 472 tags of the corpus; on the news category (``ca01``-``ca44``)
they give NLTK's ``tagset='universal'`` counts exactly (NOUN 30,654, VERB 14,399, ADP 12,355, ``.`` 11,928,
DET 11,389, ADJ 6,706, ADV 3,349, CONJ 2,717, PRON 2,535, PRT 2,264, NUM 2,166, X 92).
"""

from __future__ import annotations

import re

UNIVERSAL_TAGS = ("VERB", "NOUN", "PRON", "ADJ", "ADV", "ADP", "CONJ", "DET", "NUM", "PRT", "X", ".")

#: Brown base tag -> universal tag.
BROWN_BASE: dict[str, str] = {
    # punctuation
    "(": ".", ")": ".", ",": ".", "--": ".", ".": ".", ":": ".", "'": ".", "''": ".", "``": ".",
    # negator "not", "n't"
    "*": "ADV",
    # pre-quantifiers / pre-qualifiers ("quite", "all", "half"), "both"/"either", post-determiners ("many")
    "ABL": "PRT", "ABN": "PRT", "ABX": "DET", "AP": "ADJ",
    "AT": "DET",
    # forms of "be", "do", "have", modals, verbs
    "BE": "VERB", "BED": "VERB", "BEDZ": "VERB", "BEG": "VERB", "BEM": "VERB", "BEN": "VERB", "BER": "VERB",
    "BEZ": "VERB", "DO": "VERB", "DOD": "VERB", "DOZ": "VERB", "HV": "VERB", "HVD": "VERB", "HVG": "VERB",
    "HVN": "VERB", "HVZ": "VERB", "MD": "VERB", "VB": "VERB", "VBD": "VERB", "VBG": "VERB", "VBN": "VERB",
    "VBZ": "VERB",
    "CC": "CONJ", "CD": "NUM", "CS": "ADP", "IN": "ADP",
    "DT": "DET", "DTI": "DET", "DTS": "DET", "DTX": "DET", "WDT": "DET",
    "EX": "PRT",  # existential "there"
    "JJ": "ADJ", "JJR": "ADJ", "JJS": "ADJ", "JJT": "ADJ", "OD": "ADJ",
    "NIL": "X",
    "NN": "NOUN", "NNS": "NOUN", "NP": "NOUN", "NPS": "NOUN", "NR": "NOUN", "NRS": "NOUN",
    "PN": "NOUN",  # nominal pronouns: "everybody", "nothing"
    "PP$": "DET", "PP$$": "PRON", "PPL": "PRON", "PPLS": "PRON", "PPO": "PRON", "PPS": "PRON", "PPSS": "PRON",
    "WP$": "DET", "WPO": "PRON", "WPS": "PRON",
    "QL": "ADV", "QLP": "ADV", "RB": "ADV", "RBR": "ADV", "RBT": "ADV", "RN": "ADV", "WQL": "ADV", "WRB": "ADV",
    "RP": "PRT", "TO": "PRT",
    "UH": "PRT",  # interjections
}  # fmt: skip

#: Reduced tags (after dropping FW-/-TL/-HL/-NC) whose ``en-brown.map`` entry the rules above do not give.
BROWN_SPECIAL: dict[str, str] = {
    "AP$": "PRT",
    "CD$": "NOUN",
    "JJ$": "PRT",
    "RB$": "PRT",
    "WRB+IN": "PRT",
    "DO+PPSS": "X",
    "WDT+BER+PP": "X",
    "WDT+DO+PPS": "X",
}

# Parts of a compound that make a subject/adverb + verb contraction a particle.
_VERB_PARTS = {"BE", "BED", "BEDZ", "BEM", "BER", "BEZ", "DO", "DOD", "DOZ", "HV", "HVD", "HVZ", "MD", "VB", "VBZ"}
_CONTRACTING = {"DT", "DTS", "EX", "NN", "NNS", "NP", "NR", "PN", "PPS", "PPSS", "RB", "WDT", "WPS", "WRB"}
_SUFFIXES = re.compile(r"(-(TL|HL|NC|T|N))+$")


def brown_base_tag(tag: str) -> str:
    """Drop the ``-TL``/``-HL``/``-NC`` suffixes (and a leading ``FW-``): ``FW-NN-TL`` -> ``NN``."""
    tag = tag.upper()
    if tag.startswith("FW-"):
        tag = tag[3:]
    return _SUFFIXES.sub("", tag)


def _part(part: str) -> str:
    """One part of a (possibly compound) tag -> its base tag: drop ``*`` negation and ``$`` possessive."""
    if part in BROWN_BASE:
        return part
    if part.endswith("*"):
        part = part[:-1]
    if part not in BROWN_BASE and part.endswith("$"):
        part = part[:-1]
    if part not in BROWN_BASE:
        raise KeyError(part)
    return part


def brown_to_universal(tag: str) -> str:
    """A Brown tag (any case, compound or not) -> one of :data:`UNIVERSAL_TAGS`; ``KeyError`` if unknown."""
    upper = tag.upper()
    if upper.startswith("FW-"):
        return "X"
    reduced = brown_base_tag(upper)
    if reduced in BROWN_SPECIAL:
        return BROWN_SPECIAL[reduced]
    try:
        parts = [_part(p) for p in reduced.split("+")]
    except KeyError as e:
        raise KeyError(f"unknown Brown tag {tag!r} (part {e.args[0]!r})") from None
    if len(parts) > 1 and parts[0] in _CONTRACTING and parts[1] in _VERB_PARTS:
        return "PRT"
    return BROWN_BASE[parts[0]]
