"""Rebuild synthetic_glove.npz: the GloVe vectors (300-d, glove.840B.300d via CNM's release vocabulary)
of every word the synthetic demo dataset can produce, so that CNM's demo runs offline.

    python mmn/demo/assets/make_glove_subset.py ../shared/data/cnm/charades_glove.npz
"""
import os
import sys

import numpy as np

from mmn.modeling.cnm.text import tokenize
from mmn.demo.synthetic import ACTIONS, SUBJECTS, TEMPLATES


def demo_words():
    words = set()
    for phrasings in ACTIONS:
        for action in phrasings:
            for subject in SUBJECTS:
                for template in TEMPLATES:
                    words.update(tokenize(template.format(subject=subject, action=action)))
    return words


def main(source):
    data = np.load(source, allow_pickle=True)
    words = list(data["words"])
    wanted = demo_words()
    keep = [i for i, w in enumerate(words) if w in wanted]
    missing = wanted - {words[i] for i in keep}
    if missing:
        raise SystemExit(f"{source}: no vector for {sorted(missing)}")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synthetic_glove.npz")
    np.savez_compressed(out, words=data["words"][keep], vectors=data["vectors"][keep].astype(np.float32),
                        counts=data["counts"][keep])
    print(f"wrote {out}: {len(keep)} words")


if __name__ == "__main__":
    main(sys.argv[1])
