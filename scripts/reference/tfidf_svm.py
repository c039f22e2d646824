"""TF-IDF + linear SVM on split files (train/val/test.jsonl from `candor split`).

Usage: python3 tfidf_svm.py SPLIT_DIR   (needs scikit-learn)
Prints validation and test accuracy for unigrams and 1-2-grams at C = 0.3, 1, 3.
"""
import json
import sys

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

split = sys.argv[1]


def load(name):
    with open(f"{split}/{name}.jsonl") as f:
        return [json.loads(line) for line in f]


train, val, test = load("train"), load("val"), load("test")
for ngrams in [(1, 1), (1, 2)]:
    for c in [0.3, 1, 3]:
        vectorizer = TfidfVectorizer(ngram_range=ngrams, sublinear_tf=True)
        x = vectorizer.fit_transform([r["text"] for r in train])
        model = LinearSVC(C=c).fit(x, [str(r["label"]) for r in train])

        def accuracy(rows):
            predicted = model.predict(vectorizer.transform([r["text"] for r in rows]))
            return sum(p == str(r["label"]) for p, r in zip(predicted, rows)) / len(rows)

        print(f"ngrams {ngrams} C {c}: val {accuracy(val):.1%} test {accuracy(test):.1%}")
