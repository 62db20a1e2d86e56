"""Brown -> universal tags (Petrov et al. 2012, ``en-brown.map``): base tags, reductions and the odd entries."""

from __future__ import annotations

import pytest

from rnnkit.data.tagsets import BROWN_BASE, UNIVERSAL_TAGS, brown_base_tag, brown_to_universal


@pytest.mark.parametrize(
    ("tag", "universal"),
    [
        # base tags
        ("AT", "DET"), ("NN", "NOUN"), ("NP", "NOUN"), ("VBD", "VERB"), ("IN", "ADP"), ("CS", "ADP"),
        ("CC", "CONJ"), ("CD", "NUM"), ("OD", "ADJ"), ("PPS", "PRON"), ("PP$", "DET"), ("PP$$", "PRON"),
        ("WP$", "DET"), ("PN", "NOUN"), ("EX", "PRT"), ("RP", "PRT"), ("TO", "PRT"), ("UH", "PRT"),
        ("QL", "ADV"), ("ABN", "PRT"), ("ABX", "DET"), ("NIL", "X"), ("``", "."), ("--", "."),
        # -TL / -HL / -NC suffixes, stacked or cut short
        ("NN-TL", "NOUN"), ("VBD-HL", "VERB"), ("JJ-TL-HL", "ADJ"), ("---HL", "."), ("PPSS+BER-N", "PRT"),
        # negation and possessives
        ("*", "ADV"), ("*-HL", "ADV"), ("BEDZ*", "VERB"), ("MD*-HL", "VERB"), ("NN$", "NOUN"),
        ("NP$-TL", "NOUN"), ("AP$", "PRT"), ("CD$", "NOUN"), ("JJ$-TL", "PRT"), ("RB$", "PRT"),
        # foreign words: always X
        ("FW-NN", "X"), ("FW-IN+AT-T", "X"), ("FW-*", "X"), ("FW-VB-NC", "X"),
        # compounds: subject/adverb + verb contractions are particles, the rest follow the first part
        ("PPS+BEZ", "PRT"), ("PPSS+MD", "PRT"), ("EX+BEZ", "PRT"), ("WRB+DOD*", "PRT"), ("RB+BEZ-HL", "PRT"),
        ("NN+HVZ-TL", "PRT"), ("VB+PPO", "VERB"), ("MD+PPSS", "VERB"), ("IN+PPO", "ADP"), ("JJR+CS", "ADJ"),
        ("RB+CS", "ADV"), ("NN+IN", "NOUN"), ("TO+VB", "PRT"), ("WRB+IN", "PRT"), ("DO+PPSS", "X"),
        ("WDT+DO+PPS", "X"),
    ],
)  # fmt: skip
def test_mapping(tag, universal):
    assert brown_to_universal(tag) == universal
    assert brown_to_universal(tag.lower()) == universal  # the raw corpus files are lower-case


def test_base_tags_and_universal_set():
    assert set(BROWN_BASE.values()) == set(UNIVERSAL_TAGS)
    assert brown_base_tag("fw-nn-tl") == "NN" and brown_base_tag("NN-TL-HL") == "NN"


def test_unknown_tag():
    with pytest.raises(KeyError, match="unknown Brown tag 'ZZ-TL'"):
        brown_to_universal("ZZ-TL")
