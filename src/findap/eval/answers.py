"""Reading the answer a model reply STATES: the final-answer part, the option letter, the label, the number.

Both FinEval (the registered extractors in `findap.eval.extract`) and distillation (`findap.distill`: the exact
answer check that labels sampled solutions) read answers out of free text. They share this one module so a reply
is read the same way in both places: a fix here fixes both. It holds no registry, no task spec and no I/O, so
distillation depends on nothing but these readers.

The rules, in short (each function says more):
- the final answer is what follows the last answer marker ("Answer:", "**Final Answer**:", "The answer is"),
  else the whole reply;
- a letter or label is the one stated at the START of the final answer; elsewhere an explicit statement
  ("the correct option is C", "C is correct", a bold label), negated mentions ("not positive", "neither hawkish
  nor dovish") and later discussion ("option A ignores ...") are not answers; "..., but actually C" revises;
- a number is the one right after the answer marker (or after the last '=' / 'is' of the concluding sentence),
  not the last number of the line; it is the gold number when equal to an integer gold, or within the rounding
  of a non-integer gold (`same_number`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

LETTERS = "ABCDEFGHIJ"

# --------------------------------------------------------------------------------------------- final answer
# "Answer:", "**Final Answer**:", "Selection:", "Answer -"; and the colon-less "the (final) answer is ..."
# (not "the answer is not ...", which is reasoning, not a conclusion).
_MARKER = re.compile(
    r"(?:final\s+answer|answer|selection)\s*\**\s*(?:is\s*)?\**\s*[:：]"
    r"|(?:final\s+)?answer\s+(?:is|would\s+be|should\s+be|will\s+be)\b(?!\s+not\b)\s*:?",
    re.I,
)


def answer_tail(output: str) -> str | None:
    """Text after the last answer marker that has something after it; None when the reply has no marker."""
    for m in reversed(list(_MARKER.finditer(output))):
        tail = output[m.end():].strip()
        if _strip_decoration(tail):
            return tail
    return None


def final_answer(output: str) -> str:
    """Text after the last 'Answer:' / 'Final answer:' / 'Selection:' / 'the answer is' marker, else the reply."""
    tail = answer_tail(output)
    return tail if tail is not None else output.strip()


_DECORATION = re.compile(r"^(?:[\s*_#`>\"'“”‘’\[\]{}$:\-–—]|\\boxed\{|\\text\{|\\\(|\\\[)+")


def _strip_decoration(text: str) -> str:
    """Leading markdown, quotes, brackets and LaTeX wrappers: '**', '"', '$\\boxed{', '- '."""
    return _DECORATION.sub("", text)


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if _strip_decoration(line).strip()), "")


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(*$\"'-]|\d)")


def sentences(text: str) -> list[str]:
    """Sentence split that keeps decimals ('8.25') and abbreviations without a following capital intact."""
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


# ------------------------------------------------------------------------------------------------- numbers
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
# No letter or digit may come before a number ('Q4', 'FY2019', 'v1.2' are not numbers); units may be glued after
# it ('15kg', '200cm', '$1.5bn').
_NUMBER = re.compile(
    rf"(?<![\w.])(?P<open>\(\s*)?(?P<sign>[-−+])?\s?(?P<currency>[$€£¥])?\s?(?P<sign2>[-−])?"
    rf"(?P<digits>{_DIGITS})(?![\d_])(?P<percent>\s?%|\s?percent\b|\s?per\s?cent\b)?(?P<close>\s*\))?",
    re.I,
)


@dataclass(frozen=True)
class StatedNumber:
    """A number as written: `text` is its cleaned form ('-1234', '1250.50'), `value` the float it means."""

    text: str
    value: float
    percent: bool  # written with '%' or 'percent': 12% is 12 here, and also means 0.12
    decimals: int  # digits after the point as written (the precision the writer rounded to)
    start: int
    end: int


def numbers_in(text: str) -> list[StatedNumber]:
    """Every number in `text`: '$1,234.5', '-5', '−5', '(123)' (accounting negative), '12%', '.5'."""
    found = []
    for m in _NUMBER.finditer(text):
        digits = m.group("digits").replace(",", "")
        accounting = bool(m.group("open")) and bool(m.group("close"))
        negative = accounting or m.group("sign") in ("-", "−") or bool(m.group("sign2"))
        clean = ("-" if negative else "") + digits
        value = float(digits) * (-1 if negative else 1)
        decimals = len(digits.partition(".")[2])
        # an opening bracket that is not closed right after belongs to the text, not to the number
        start = m.start("sign") if not accounting and m.group("sign") else (
            m.start() if accounting else m.start("currency") if m.group("currency") else m.start("digits"))
        found.append(StatedNumber(clean, value, bool(m.group("percent")), decimals, start, m.end()))
    return found


# What introduces the value a sentence concludes with. An equation's result comes first ('3 dozen cookies is
# 3 * 12 = 36' -> 36, '300 minutes is 300/60 = 5 hours' -> 5); then words: 'is 990', 'equals 990',
# 'Net change: (12)'. 'which is' / 'that is' start a side remark ('990, which is 8.25% of ...') and are skipped.
_EQUALS = re.compile(r"(?<![<>!=])=(?!=)|≈")
_COPULA = re.compile(
    r":(?!\d)|(?<!\bwhich )(?<!\bthat )(?<!\bthis )(?<!\bit )"
    r"\b(?:is|are|was|were|equals?|be|totals?|totaling|totalling|comes\s+to|amounts?\s+to|gives|yields)\b",
    re.I,
)
_LEADING_NOISE = re.compile(r"^(?:[\s*_#`>\"'“”‘’\[\]{}$~≈=:\-–—]|\\boxed\{|\\text\{|\\\(|\\\[|approximately\b|"
                            r"approx\.?|about\b|around\b|roughly\b|usd\b|us\$|eur\b)*", re.I)
_STEP_LABEL = re.compile(r"^\s*\**\s*step\s+\d+\s*\**\s*[:.)\-]\s*", re.I)


def _number_at_start(statement: str) -> StatedNumber | None:
    """The first number, when only decoration ('**', '$', '=', 'approximately') comes before it."""
    offset = _LEADING_NOISE.match(statement).end()  # the noise may hold the number's own '$' or '-'
    numbers = numbers_in(statement)
    return numbers[0] if numbers and numbers[0].start <= offset else None


def _number_after(introducer: re.Pattern, statement: str) -> StatedNumber | None:
    """The number right after the last introducer ('=', 'is', ':') that has one within three words."""
    numbers = numbers_in(statement)
    for intro in reversed(list(introducer.finditer(statement))):
        following = [n for n in numbers if n.start >= intro.end()]
        if following and len(statement[intro.end():following[0].start].split()) <= 3:
            return following[0]
    return None


def number_in_statement(statement: str) -> StatedNumber | None:
    """The number one sentence states: an equation's result ('... = 990'), else the number it opens with
    ('990 dollars after 8 years' -> 990), else the one right after its last 'is' / ':' ('After 8 years the
    balance is 2490' -> 2490), else its first number."""
    statement = _STEP_LABEL.sub("", statement)
    numbers = numbers_in(statement)
    if not numbers:
        return None
    return (_number_after(_EQUALS, statement) or _number_at_start(statement) or _number_after(_COPULA, statement)
            or numbers[0])


_GSM8K = re.compile(r"####\s*(.+)")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def stated_number(output: str) -> StatedNumber | None:
    """The number a reply gives as its answer.

    `#### N` (GSM8K) wins, then the last `\\boxed{N}`; then the first sentence after the last answer marker
    ('Answer: 990 (rounded to 2 decimals)' -> 990); without a marker, the last sentence holding a number on the
    last line holding one (a conclusion comes last).
    """
    for pattern in (_GSM8K, _BOXED):
        hits = [n for m in pattern.finditer(output) if (n := number_in_statement(m.group(1)))]
        if hits:
            return hits[-1]
    tail = answer_tail(output)
    if tail is not None:
        line = _first_line(tail)
        first = next((s for s in sentences(line) if numbers_in(s)), None)
        if first is not None:
            return number_in_statement(first)
        # the marker line holds no number ('Answer: see above'): read the reply as if it had no marker
    lines = [line for line in output.splitlines() if numbers_in(_STEP_LABEL.sub("", line))]
    if not lines:
        return None
    last = [s for s in sentences(lines[-1]) if numbers_in(_STEP_LABEL.sub("", s))]
    return number_in_statement(last[-1]) if last else None


def single_number(text: str) -> StatedNumber | None:
    """The number a gold answer is, when it is exactly one number ('990.0', '$2,490', '-22.22', '25%'); None
    for anything else ('between 5 and 6', 'N/A', ''): an unreadable gold answer must not be guessed."""
    found = numbers_in(text)
    return found[0] if len(found) == 1 else None


def same_number(pred: StatedNumber, gold: StatedNumber, percent_question: bool = False) -> bool:
    """Whether `pred` states the gold number: FinEval's `numeric_acc` and distillation's exact check both ask here.

    An integer gold (GSM8K's, a count, '1000', also '72.0') is matched exactly: 1000000.0 and 1,000,000 are
    1000000, 1000099 is not. Any other gold was rounded to the decimals it is written with, so it accepts what
    rounds to it: half a unit in its last decimal place (gold 8.25 accepts 8.250 and 8.2549, not 8.26). A factor of
    100 is accepted only as a percent: when one side writes '%' (8.25% is 0.0825), or when `percent_question`
    says the question asks for a percent or a decimal ratio (0.25 for a gold 25). The arithmetic is decimal on the
    numbers as written, so no binary rounding can make two different numbers equal or two equal ones differ.
    """
    p, g = Decimal(pred.text), Decimal(gold.text)
    # the prediction in the gold's scale: as written, and where a percent allows it, x100 or /100
    candidates = {p}
    if pred.percent and not gold.percent:
        candidates.add(p.scaleb(-2))
    if gold.percent and not pred.percent:
        candidates.add(p.scaleb(2))
    if percent_question:
        candidates |= {p.scaleb(2), p.scaleb(-2)}
    tolerance = Decimal(0) if g == g.to_integral_value() else Decimal(5).scaleb(-gold.decimals - 1)
    return any(abs(c - g) <= tolerance for c in candidates)


# ------------------------------------------------------------------------------------------------- letters
# What may follow a bare letter for it to be an answer: 'B.', 'B)', 'B:', 'B,', 'B' at the end, 'B - text',
# 'B is correct', 'B because ...'. 'A good way to think' is an article, not option A.
_AFTER_LETTER = r"(?=[ \t]*(?:[.):,;!]|\*|\r?\n|$)|\s+(?:[-–—]|is\b|because\b|since\b|as\b|would\b|seems\b))"
_REVISION = r"(?:actually|on\s+second\s+thought|correction|wait|rather|no\s*,)"


def _letter_token(valid: str) -> str:
    return rf"(?:\*\*|__)?[\(\[]?(?:\*\*)?(?i:option\s+|choice\s+)?([{valid}])(?:\*\*)?[\)\]]?(?:\*\*|__)?"


def _letter_patterns(valid: str) -> dict[str, re.Pattern]:
    token = _letter_token(valid)
    explicit = (
        rf"\[\[\s*([{valid}])\s*\]\]|\\boxed\{{\s*(?:\\text\{{)?\s*([{valid}])\b"
        rf"|(?:answer|choice|option|selection)\s+(?:is|would\s+be|should\s+be|will\s+be)\s*:?\s*{token}{_AFTER_LETTER}"
        rf"|{token}\s+(?:is|would\s+be|seems)\s+(?:the\s+)?(?:correct|right|best|most\s+\w+|answer)\b"
        rf"|\b(?:choose|select|pick|go\s+with|opt\s+for)\s+(?:answer\s+)?{token}{_AFTER_LETTER}"
        rf"|\b(?:so|therefore|thus|hence)\s*,?\s*(?:it(?:'s|\s+is)\s+)?{token}\s*(?:[.!]|$)"
        rf"|\bit(?:'s|\s+is)\s+(?:option\s+)?{token}{_AFTER_LETTER}"
    )
    return {
        "revision": re.compile(rf"\b{_REVISION}\s*[,:]?\s*(?:it(?:'s|\s+is)\s+|the\s+answer\s+is\s+)?{token}"
                               rf"{_AFTER_LETTER}", re.I | re.M),
        "explicit": re.compile(explicit, re.I | re.M),
        "line_start": re.compile(rf"^[\s>#*_\-]*{token}{_AFTER_LETTER}", re.M),
        "bracketed": re.compile(rf"\(([{valid}])\)"),
    }


def _hits(pattern: re.Pattern, text: str, valid: str) -> list[int]:
    """Option indices of the pattern's matches in order (each match fills exactly one group: the letter).
    Only capitals count here: a lowercase 'a' in running text is an article far more often than an option."""
    found = []
    for m in pattern.finditer(text):
        letter = next(g for g in m.groups() if g)
        if letter in valid:
            found.append(valid.index(letter))
    return found


def _letter_at_start(text: str, valid: str) -> int | None:
    """The letter a final answer opens with: 'C, since option A ...', '**(B)**', 'Option C', '[[D]]'."""
    opening = re.match(rf"^[\s*_#>`\"'“”]*(?:\\boxed\{{|\[\[|\$)*\s*{_letter_token(valid)}(?:\]\]|\}})?{_AFTER_LETTER}",
                       text, re.I)
    if opening and opening.group(1).upper() in valid:  # right after a marker, 'b)' is option B too
        return valid.index(opening.group(1).upper())
    return None


def stated_letter(output: str, n_choices: int) -> int | None:
    """The option (0-based) a reply states, or None.

    After an answer marker: a revision ('..., but actually C'), else the letter the final answer opens with,
    else the first explicit statement in it. Without a marker: a revision, else the last explicit statement
    ('the correct option is C', 'C is correct', 'so C.'; CoT concludes last), else the first line that opens
    with a letter ('B. Option A ignores taxes.'), else the first '(X)'. Mentions such as 'option A ignores ...'
    are discussion, never the answer.
    """
    valid = LETTERS[:n_choices]
    patterns = _letter_patterns(valid)
    tail = answer_tail(output)
    if tail is not None:
        revised = _hits(patterns["revision"], tail, valid)
        if revised:
            return revised[-1]
        opening = _letter_at_start(tail, valid)
        if opening is not None:
            return opening
        for kind in ("explicit", "bracketed"):
            hits = _hits(patterns[kind], tail, valid)
            if hits:
                return hits[0]
        return None
    for kind, pick in (("revision", -1), ("explicit", -1), ("line_start", 0), ("bracketed", 0)):
        hits = _hits(patterns[kind], output, valid)
        if hits:
            return hits[pick]
    return None


# -------------------------------------------------------------------------------------------------- labels
_NEGATOR = re.compile(r"\b(?:not|no|never|neither|nor|without|than|instead\s+of|hardly|barely|lacks?|cannot|"
                      r"\w+n['’]t|isnt|arent|wasnt|doesnt|dont)\b", re.I)
_CLAUSE_BREAK = re.compile(r"[.;:!?\n()\[\],]|\bbut\b|\bhowever\b|\bso\b", re.I)
_REVISED = re.compile(rf"\b{_REVISION}\s*[,:]?\s*(?:it(?:'s|\s+is)\s+|the\s+\w+\s+is\s+)?[\s*\"'“]*$", re.I)


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    label: str


def _is_negated(text: str, start: int, term: str) -> bool:
    """A negator among the three words before the term, in the same clause: 'not a positive', 'neither hawkish
    nor dovish', 'rather than dovish'. A term that is itself a negator word ('no' as a label) is never negated."""
    if _NEGATOR.fullmatch(term):
        return False
    clause = _CLAUSE_BREAK.split(text[:start])[-1]
    words = clause.split()[-4:]
    return bool(_NEGATOR.search(" ".join(words)))


# Label words that are also determiners or quantifiers ('no' of the yes/no and stock-movement tasks). Such a word
# states its label only where it stands on its own, as a reply to the question ('No.', 'Answer: no',
# 'no, it will not', 'No it won't'); where it quantifies the word after it ('no sign of default', 'no major news')
# it is part of the reasoning, not an answer.
_DETERMINER_TERMS = frozenset({"no", "any", "some", "all", "each", "every", "either", "neither"})
_NEXT_WORD = re.compile(r"[ \t]+([A-Za-z][\w'’]*)")
# Words that open a new clause: after one of these the determiner-like term was a standalone answer
# ('No it will not', 'no because the ratios are healthy'); a determiner is never followed by them.
_CLAUSE_OPENERS = frozenset({
    "it", "its", "the", "this", "that", "these", "those", "they", "he", "she", "i", "we", "you", "there",
    "because", "since", "as", "but", "so", "and", "or", "not", "then", "thus", "therefore",
})


def _quantifies_next_word(text: str, end: int, term: str) -> bool:
    """Whether a determiner-like label term ending at `end` quantifies the word right after it ('no sign'),
    rather than standing alone before punctuation, a line break, the end or a new clause."""
    if term.lower() not in _DETERMINER_TERMS:
        return False
    following = _NEXT_WORD.match(text, end)
    if not following:
        return False
    word = re.split(r"['’]", following.group(1).lower())[0]  # "it's" and "that's" open a clause as "it" does
    return word not in _CLAUSE_OPENERS


def label_mentions(text: str, labels: list[str], synonyms: dict[str, list[str]]) -> list[_Mention]:
    """Every whole-word mention of a label or a synonym that is not negated and not a determiner of the next
    word ('no sign of default' mentions no label), in reading order (the longer term wins where two overlap)."""
    found: list[_Mention] = []
    for label in labels:
        for term in [label, *synonyms.get(label, [])]:
            # 'non-negative' / 'non negative' mean 'not negative'
            pattern = re.compile(rf"(?<![A-Za-z0-9])(?<!non-)(?<!non ){re.escape(term)}(?![A-Za-z0-9])", re.I)
            found += [_Mention(m.start(), m.end(), label) for m in pattern.finditer(text)
                      if not _is_negated(text, m.start(), term) and not _quantifies_next_word(text, m.end(), term)]
    found.sort(key=lambda m: (m.start, -(m.end - m.start)))
    kept: list[_Mention] = []
    for mention in found:
        if not kept or mention.start >= kept[-1].end:
            kept.append(mention)
    return kept


def stated_label(text: str, labels: list[str], synonyms: dict[str, list[str]]) -> str | None:
    """The label `text` states: the one it opens with ('Negative. It is not a positive development.'), else a
    revision ('positive, or rather negative'), else the first bold one ('the tone is **neutral**'), else the
    first mention. Negated mentions ('not dovish', 'neither hawkish nor dovish') are not answers."""
    mentions = label_mentions(text, labels, synonyms)
    if not mentions:
        return None
    lead = _DECORATION.match(text)
    if mentions[0].start <= (lead.end() if lead else 0):
        return mentions[0].label
    revised = [m for m in mentions if _REVISED.search(text[:m.start])]
    if revised:
        return revised[-1].label
    bold = [m for m in mentions if text[:m.start].endswith(("**", "__")) and text[m.end:].startswith(("**", "__"))]
    return (bold or mentions)[0].label
