"""Small, made-up paper tables for tests: each class has its own topic words, so a tiny model can learn them."""

import csv
import random
from pathlib import Path

TOPICS = {
    "cs.AI": "planning agents reasoning logic knowledge symbolic search heuristic solver ontology",
    "cs.CL": "language text translation parsing tokens corpus sentences dialogue summarization lexical",
    "cs.CV": "image pixels segmentation detection camera video visual convolutional depth scene",
    "cs.LG": "gradient optimization regularization kernel bandit convergence generalization loss stochastic sampling",
}
COMMON = "we propose a novel method for the problem and show results on benchmarks with strong baselines".split()


def make_papers(n_per_class: int = 40, labels=("cs.AI", "cs.CL", "cs.CV"), seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    papers = []
    for label in labels:
        topic = TOPICS[label].split()
        for _ in range(n_per_class):
            title = " ".join(rng.choice(topic if rng.random() < 0.7 else COMMON) for _ in range(rng.randint(3, 8)))
            words = [rng.choice(topic if rng.random() < 0.4 else COMMON) for _ in range(rng.randint(15, 60))]
            papers.append({"title": title.capitalize(), "abstract": " ".join(words) + ".", "category": label})
    rng.shuffle(papers)
    return papers


def write_papers_csv(path: Path, papers: list[dict] | None = None, **kwargs) -> Path:
    papers = make_papers(**kwargs) if papers is None else papers
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["title", "abstract", "category"])
        writer.writeheader()
        writer.writerows(papers)
    return Path(path)


def make_multi_label_papers(n: int = 150, labels=("cs.AI", "cs.CL", "cs.CV", "cs.LG"), seed: int = 0) -> list[dict]:
    """Papers of one or two labels each (space-separated in `categories`), their words drawn from each label's
    topic: a tiny multi-label model can learn them."""
    rng = random.Random(seed)
    papers = []
    for _ in range(n):
        own = sorted(rng.sample(labels, 1 if rng.random() < 0.5 else 2))
        topic = [word for label in own for word in TOPICS[label].split()]
        title = " ".join(rng.choice(topic if rng.random() < 0.7 else COMMON) for _ in range(rng.randint(3, 8)))
        words = [rng.choice(topic if rng.random() < 0.5 else COMMON) for _ in range(rng.randint(15, 60))]
        papers.append({"title": title.capitalize(), "abstract": " ".join(words) + ".", "categories": " ".join(own)})
    return papers


def write_multi_label_csv(path: Path, papers: list[dict] | None = None, **kwargs) -> Path:
    papers = make_multi_label_papers(**kwargs) if papers is None else papers
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["title", "abstract", "categories"])
        writer.writeheader()
        writer.writerows(papers)
    return Path(path)
