"""CNM text: word tokenisation, the masking weights, GloVe files and the vocabulary."""
import os

import numpy as np
import pytest

from mmn.data.glove import load_glove_npz, load_glove_text
from mmn.modeling.cnm.text import CNMVocabulary, masking_weight, tokenize, word_tokenize

from helpers.paths import SHARED_DIR

SHARED_GLOVE = os.path.join(SHARED_DIR, "data", "cnm", "charades_glove.npz")


# ---------------------------------------------------------------------------- text
def test_word_tokenize_like_nltk():
    assert word_tokenize("A person is putting a book on a shelf.") == \
        ["A", "person", "is", "putting", "a", "book", "on", "a", "shelf", "."]
    assert word_tokenize("The man's dog doesn't run, they're sad. Then he can't.") == \
        ["The", "man", "'s", "dog", "does", "n't", "run", ",", "they", "'re", "sad", ".", "Then", "he", "ca", "n't", "."]
    assert word_tokenize('He said "hi" (twice)!') == ["He", "said", "``", "hi", "''", "(", "twice", ")", "!"]
    assert tokenize("Person OPENS the door") == ["person", "opens", "the", "door"]


def test_masking_weight_rule():
    assert [masking_weight(w) for w in ["person", "opens", "quickly", "red", "is", "'re", "n't", "when"]] == [2] * 8
    assert [masking_weight(w) for w in ["a", "the", "on", "their", "and", "to", "'s", ".", ",", "2", "can"]] == [1] * 11


def test_glove_text_loading(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2 0.3\nnew york 1 2 3\nthe 9 9 9\ncat -1 0 1.5\n")
    vectors = load_glove_text(str(path), dim=3)
    assert set(vectors) == {"the", "new york", "cat"}
    assert np.allclose(vectors["the"], [9, 9, 9]) and vectors["cat"].dtype == np.float32  # last wins (release)
    assert np.allclose(vectors["new york"], [1, 2, 3])
    assert set(load_glove_text(str(path), words={"cat"}, dim=3)) == {"cat"}
    path.write_text("bad 1 2\n")
    with pytest.raises(ValueError, match=":1:"):
        load_glove_text(str(path), dim=3)


def test_vocabulary_from_npz_keeps_most_frequent_in_file_order(tmp_path):
    path = tmp_path / "v.npz"
    words = np.array(["<PAD>", "a", "b", "c", "d", "e"])
    vectors = np.arange(12, dtype=np.float32).reshape(6, 2)
    counts = np.array([0, 3, 5, 3, 1, 3])
    np.savez(path, words=words, vectors=vectors, counts=counts)
    vocab = CNMVocabulary.from_npz(str(path), 4)
    assert vocab.words == ["b", "a", "c", "e"]  # ties (3) in file order, as Counter.most_common
    assert vocab.word_to_id == {"b": 1, "a": 2, "c": 3, "e": 4}
    assert np.array_equal(vocab.vectors[0], [0, 0]) and np.array_equal(vocab.vectors[1], vectors[2])
    ids, weights = vocab.encode("A b, d? c")
    assert ids == [2, 1, 3] and weights == [1, 2, 2]  # 'd' dropped (not kept), ',' '?' unknown
    with pytest.raises(ValueError, match="VOCAB_SIZE"):
        CNMVocabulary.from_npz(str(path), 9)


@pytest.mark.skipif(not os.path.exists(SHARED_GLOVE), reason="shared Charades GloVe npz not present")
def test_charades_release_vocabulary():
    words, vectors, counts = load_glove_npz(SHARED_GLOVE)
    assert vectors.shape == (1146, 300) and words[0] == "<PAD>"
    vocab = CNMVocabulary.from_npz(SHARED_GLOVE, 1111)
    assert len(vocab) == 1111 and vocab.vectors.shape == (1112, 300)
    assert vocab.words[:3] == [".", "person", "a"]
    ids, _ = vocab.encode("A person is putting a book on a shelf.")
    assert len(ids) == 10
