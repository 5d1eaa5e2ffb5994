"""CNM's text side without NLTK data: tokenisation, masking weights, vocabulary and GloVe loading.

- ``word_tokenize``: a re-implementation of NLTK's ``word_tokenize`` for English (sentence split on
  . ! ? followed by white space, as Punkt does for ordinary text, then the Treebank rules of NLTK's
  ``NLTKWordTokenizer``: quotes, punctuation, brackets, clitics such as n't 's 're 'll, "cannot").
  Punkt's abbreviation handling ("Mr.") is not reproduced.
- ``masking_weight``: the release tags words with NLTK's perceptron tagger and gives weight 2 to
  tags containing NN, VB, JJ or RB, else 1. The tagger model cannot be downloaded here, so we use a
  documented rule: closed-class words (determiners, prepositions, pronouns, conjunctions, modals,
  numbers, particles, "to", "there", possessive 's) and punctuation get 1, every other word 2.
  Auxiliaries ("is", "are", "'re": VB*) and wh-adverbs ("when", "where": WRB contains RB) keep 2 as
  they would under the tagger.
- ``CNMVocabulary``: kept words (the ``vocab_size`` most frequent training words, ids 1..V, 0 =
  padding; words outside it are DROPPED from the query), and their GloVe vectors.
"""
import collections
import re

import numpy as np

from ...data.glove import load_glove_npz
from ...utils.errors import ConfigError

# ---------------------------------------------------------------------------- tokenisation
_STARTING_QUOTES = [
    (re.compile(r"([«“‘„]|[`]+)", re.U), r" \1 "),
    (re.compile(r"^\""), r"``"),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile(r"([ \(\[{<])(\"|\'{2})"), r"\1 `` "),
    (re.compile(r"(?i)(\')(?!re|ve|ll|m|t|s|d|n)(\w)\b", re.U), r"\1 \2"),
]
_ENDING_QUOTES = [
    (re.compile(r"([»”’])", re.U), r" \1 "),
    (re.compile(r"''"), " '' "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"\s+"), " "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
]
_PUNCTUATION = [
    (re.compile(r'([^\.])(\.)([\]\)}>"\'' "»”’ " r"]*)\s*$", re.U), r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}", re.U), r" \g<0> "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "),
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"[*]", re.U), r" \g<0> "),
]
_PARENS = (re.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> ")
_DOUBLE_DASHES = (re.compile(r"--"), r" -- ")
_CONTRACTIONS = [re.compile(p, re.I) for p in (
    r"(?i)\b(can)(?#X)(not)\b", r"(?i)\b(d)(?#X)('ye)\b", r"(?i)\b(gim)(?#X)(me)\b", r"(?i)\b(gon)(?#X)(na)\b",
    r"(?i)\b(got)(?#X)(ta)\b", r"(?i)\b(lem)(?#X)(me)\b", r"(?i)\b(more)(?#X)('n)\b", r"(?i)\b(wan)(?#X)(na)(?=\s)",
    r"(?i) ('t)(?#X)(is)\b", r"(?i) ('t)(?#X)(was)\b")]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def _treebank(text):
    for regexp, sub in _STARTING_QUOTES:
        text = regexp.sub(sub, text)
    for regexp, sub in _PUNCTUATION:
        text = regexp.sub(sub, text)
    text = _PARENS[0].sub(_PARENS[1], text)
    text = _DOUBLE_DASHES[0].sub(_DOUBLE_DASHES[1], text)
    text = " " + text + " "
    for regexp, sub in _ENDING_QUOTES:
        text = regexp.sub(sub, text)
    for regexp in _CONTRACTIONS:
        text = regexp.sub(r" \1 \2 ", text)
    return text.split()


def word_tokenize(text):
    """Tokens of ``text`` as NLTK's ``word_tokenize`` would give them (case kept)."""
    tokens = []
    for sentence in _SENTENCE_END.split(text.strip()):
        tokens.extend(_treebank(sentence))
    return tokens


def tokenize(text):
    """Lower-cased tokens (the release lower-cases after tagging; our weight rule is case-free)."""
    return [t.lower() for t in word_tokenize(text)]


# ---------------------------------------------------------------------------- masking weights
FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every all both no another either neither half such
of in on at to from into onto upon with without within by for about above below under over across
through throughout around along among between beside besides behind beyond near toward towards
against during until till since after before while as than like via per amid despite inside outside
up down out off away
and or but nor so yet plus
if because although though whether unless whereas once
i me my mine myself you your yours yourself yourselves he him his himself she her hers herself it
its itself we us our ours ourselves they them their theirs themselves one ones someone somebody
something anyone anybody anything everyone everybody everything nobody nothing
who whom whose which what whatever whichever whoever
can could may might must shall should will would 'll 'd
there 's ' `` ''
""".split())


def masking_weight(token):
    """2 for content words (nouns, verbs, adjectives, adverbs under the release's tagger), else 1."""
    t = token.lower()
    if t in FUNCTION_WORDS:
        return 1
    if not any(ch.isalpha() for ch in t):  # punctuation, numbers
        return 1
    return 2


# ---------------------------------------------------------------------------- vocabulary
class CNMVocabulary:
    """Kept words with ids 1..V (0 = padding) and their GloVe vectors ((V + 1) x D, row 0 zeros)."""

    def __init__(self, words, vectors):
        words = list(words)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(words) + 1:
            raise ValueError(f"{len(words)} words need {len(words) + 1} vector rows (row 0 = padding), got {vectors.shape[0]}")
        if len(set(words)) != len(words):
            raise ValueError("duplicate words in the vocabulary")
        self.words = words
        self.word_to_id = {w: i + 1 for i, w in enumerate(words)}
        self.vectors = vectors

    def __len__(self):
        return len(self.words)

    @property
    def dim(self):
        return self.vectors.shape[1]

    @classmethod
    def from_counts(cls, counter, vectors_of, vocab_size):
        """The ``vocab_size`` most frequent words of ``counter`` (ties: first counted first, as
        ``Counter.most_common``); ``vectors_of``: word -> vector."""
        kept = [w for w, _ in counter.most_common(vocab_size)]
        if len(kept) < vocab_size:
            raise ConfigError(f"the training split has only {len(kept)} distinct words with a GloVe vector; "
                             f"set MODEL.CNM.VOCAB_SIZE to at most {len(kept)} (asked {vocab_size})")
        dim = len(next(iter(vectors_of[w] for w in kept))) if kept else 300
        vectors = np.zeros((len(kept) + 1, dim), dtype=np.float32)
        for i, w in enumerate(kept, 1):
            vectors[i] = vectors_of[w]
        return cls(kept, vectors)

    @classmethod
    def from_npz(cls, path, vocab_size):
        """From an npz with ``words``, ``vectors`` and ``counts`` (the release's glove.pkl content):
        keep the ``vocab_size`` most frequent by ``counts``, ties in file order (= the release's
        ``Counter.most_common`` order, whose insertion order is the file order)."""
        words, vectors, counts = load_glove_npz(path)
        if counts is None:
            raise ConfigError(f"{path}: no 'counts' array: cannot choose the most frequent words")
        counter = collections.Counter()
        table = {}
        for w, v, c in zip(words, vectors, counts):
            if w == "<PAD>" or c <= 0:
                continue
            counter[w] = int(c)
            table[w] = v
        return cls.from_counts(counter, table, vocab_size)

    @classmethod
    def from_sentences(cls, sentences, glove, vocab_size):
        """Count the tokens of ``sentences`` that have a vector in ``glove`` (dict), keep the most frequent."""
        counter = collections.Counter()
        for sentence in sentences:
            for token in tokenize(sentence):
                if token in glove:
                    counter[token] += 1
        return cls.from_counts(counter, glove, vocab_size)

    def encode(self, sentence, max_words=None):
        """(ids, masking weights) of the kept words of ``sentence``, truncated to ``max_words``."""
        ids, weights = [], []
        for token in tokenize(sentence):
            i = self.word_to_id.get(token)
            if i is None:
                continue  # dropped, not mapped to UNK (release)
            ids.append(i)
            weights.append(masking_weight(token))
        if max_words is not None:
            ids, weights = ids[:max_words], weights[:max_words]
        return ids, weights
