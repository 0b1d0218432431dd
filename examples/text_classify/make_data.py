#!/usr/bin/env python3
"""Writes the example text-classification files of configs/text_classify_distill.yaml:
train.jsonl and test.jsonl, one {"text", "label"} object per line, labels negative / neutral /
positive. Generated from templates with a fixed seed (so the files are reproducible); the
committed files are its output: python3 examples/text_classify/make_data.py"""
import json
import os
import random

SUBJECTS = ["the film", "this phone", "the hotel", "our dinner", "the service", "this book",
            "the concert", "the update", "my new laptop", "the delivery", "the coffee",
            "the museum", "this game", "the lecture", "the train ride", "the app"]
POSITIVE = ["was wonderful", "is excellent", "exceeded every expectation", "was a delight",
            "works perfectly", "is truly great", "made my day", "was worth every penny",
            "is fantastic", "felt amazing"]
NEGATIVE = ["was terrible", "is awful", "broke after a day", "was a waste of money",
            "never works", "is painfully slow", "ruined the evening", "was a huge disappointment",
            "is really bad", "felt awful"]
NEUTRAL = ["was okay", "is average", "arrived on tuesday", "was neither good nor bad",
           "works as described", "is fine I guess", "happened last week", "is what it is",
           "costs about the usual", "was as expected"]
EXTRAS = ["", "", "", " honestly.", " to be fair.", " overall.", " again!", " — café review",
          " 🙂", " (2nd visit)", " 说实话", " naïve as I was"]


def line(rng):
    label = rng.choice(["negative", "neutral", "positive"])
    phrase = rng.choice({"negative": NEGATIVE, "neutral": NEUTRAL, "positive": POSITIVE}[label])
    text = f"{rng.choice(SUBJECTS)} {phrase}{rng.choice(EXTRAS)}"
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return {"text": text, "label": label}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(25)
    for name, n in (("train.jsonl", 600), ("test.jsonl", 150)):
        with open(os.path.join(here, name), "w", encoding="utf-8") as f:
            for _ in range(n):
                f.write(json.dumps(line(rng), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
