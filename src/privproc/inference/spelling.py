"""Deterministic spelling and grammar fixes for the corrected draft (the rewrite fallback).

Only unambiguous fixes: widely listed English misspellings (a word that is not a word,
whose intended word is clear), a few fixed phrases ("could of", "with out"), and the
apostrophe of a plural before "that", "which", "are" or "were" ("the file's that" ->
"the files that"). Anything that needs the sentence's meaning (there/their, your/you're
in general) is left alone: the corrected draft must never say something the writer did
not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

_MISSPELLED_TEXT: Final = """
    accomodate:accommodate accomodation:accommodation acheive:achieve acheived:achieved
    acknowlege:acknowledge acually:actually adress:address agressive:aggressive
    alot:a_lot allready:already apparantly:apparently
    arguement:argument assesment:assessment basicly:basically becuase:because
    becasue:because beacuse:because begining:beginning beleive:believe beleived:believed
    belive:believe bizzare:bizarre buisness:business calender:calendar catagory:category
    cemetary:cemetery collegue:colleague collegues:colleagues comming:coming
    commited:committed comittee:committee completly:completely concious:conscious
    convinient:convenient definately:definitely definatly:definitely defintely:definitely
    dissapoint:disappoint dissapointed:disappointed discused:discussed embarass:embarrass
    embarassed:embarrassed enviroment:environment excercise:exercise existance:existence
    experiance:experience familar:familiar finaly:finally foriegn:foreign freind:friend
    freinds:friends fullfil:fulfil goverment:government grammer:grammar gaurd:guard
    happend:happened harrass:harass immediatly:immediately independant:independent
    interupt:interrupt knowlege:knowledge libary:library liason:liaison lisence:licence
    maintainance:maintenance millenium:millennium mispell:misspell neccessary:necessary
    necesary:necessary noticable:noticeable occassion:occasion occured:occurred
    occurence:occurrence oppurtunity:opportunity payed:paid persue:pursue
    posession:possession prefered:preferred probaly:probably publically:publicly
    realy:really reccomend:recommend recieve:receive recieved:received reciept:receipt
    recomend:recommend refered:referred relevent:relevant religous:religious
    remeber:remember resturant:restaurant rythm:rhythm schedual:schedule seperate:separate
    seperately:separately sieze:seize similiar:similar sincerly:sincerely speach:speech
    succesful:successful successfull:successful suprise:surprise suprised:surprised
    tendancy:tendency thier:their tommorow:tomorrow tommorrow:tomorrow tomorow:tomorrow
    tonite:tonight truely:truly untill:until wierd:weird wich:which writting:writing
    wensday:Wednesday wednsday:Wednesday
"""
MISSPELLED: Final = {wrong: right.replace("_", " ") for wrong, right in (
    pair.split(":") for pair in _MISSPELLED_TEXT.split())}

_PHRASES: Final = (
    (re.compile(r"\b(could|should|would|must|might) of\b", re.I), r"\1 have"),
    (re.compile(r"\bwith out\b", re.I), "without"),
    (re.compile(r"\ba lot of of\b", re.I), "a lot of"),
    (re.compile(r"\b(?:their|there) (going|gonna|coming|leaving|running)\b", re.I),
     r"they're \1"),
    (re.compile(r"\byour (welcome)\b", re.I), r"you're \1"),
    (re.compile(r"\bits (been|going|not|a|an|the)\b", re.I), r"it's \1"),
    (re.compile(r"\blets (go|meet|do|get|try|see|talk|say|start|grab|make)\b", re.I),
     r"let's \1"),
    (re.compile(r"\b(seems?|is|was|are|were|way|far|it's) to (much|many|late|early|soon|long)\b",
                re.I), r"\1 too \2"),
)
# "ticket's, which", "file's that": a plural, not a possessive (a noun would follow one).
_PLURAL_APOSTROPHE = re.compile(
    r"\b(?!(?:it|that|there|what|who|he|she|let|here|where|how|when|everyone|nobody|"
    r"someone|everything|nothing|something)'s\b)([a-z]{3,})'s(?=,? (?:that|which|are|were)\b)")


def _case_like(word: str, fix: str) -> str:
    return fix[0].upper() + fix[1:] if word[0].isupper() else fix


def correct_spelling(text: str) -> str:
    """``text`` with its unambiguous misspellings fixed, everything else as written."""
    def word(m: re.Match[str]) -> str:
        found = m.group(0)
        fix = MISSPELLED.get(found.lower())
        return _case_like(found, fix) if fix else found

    text = re.sub(r"\b[A-Za-z]+\b", word, text)
    for pattern, replacement in _PHRASES:
        text = pattern.sub(_phrase_fixer(replacement), text)
    return _PLURAL_APOSTROPHE.sub(r"\1s", text)


def _phrase_fixer(replacement: str) -> Callable[[re.Match[str]], str]:
    def fix(m: re.Match[str]) -> str:
        return _case_like(m.group(0), m.expand(replacement))

    return fix
