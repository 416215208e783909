"""Papers in, tokenized `datasets` splits out.

A table of papers (CSV, JSON/JSONL, Parquet or a Hub dataset, read and cleaned by `hf_hybrid.tables`) becomes,
cleaned of duplicates, a `DatasetDict` with `train`/`validation`/`test` splits of `title`, `abstract` and integer
`labels` (a `ClassLabel`), or, for multi-label classification, `labels` as the list of each paper's label ids (a
`Sequence` of `ClassLabel`), read from space-separated names (arXiv's convention: `cs.CV cs.LG`) or from a list
column. Splits not given as files are cut off the training table, stratified by class and seeded, as the notebook
did (70/15/15); multi-label papers are stratified by their rarest label (see `stratified_split`).
"""

import logging
from collections import Counter

from datasets import ClassLabel, Dataset, DatasetDict

from .errors import DataError, UserError
from .model.tokenization_hybrid_cnn_lstm import build_word_tokenizer
from .tables import (
    LABEL_COLUMN,
    NAME_SEPARATORS,
    encode_labels,
    is_multi_label_table,
    label_list,
    label_names_of,
    prepare_table,
    read_table,
    shown_list,
)

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("title", "abstract")
LABEL_IDS_COLUMN = "label_ids"
# A paper with fewer words than this (title and abstract together) is reported: it gives the model little to read.
NEAR_EMPTY_WORDS = 5
STRATUM_COLUMN = "stratum"


def stratified_split(table: Dataset, held_out: dict[str, float], seed: int) -> DatasetDict:
    """Cuts each held-out set (`{"test": 0.15, "validation": 0.15}`: fractions of the whole table) off
    `table`, every class in proportion, reproducibly for `seed`; the rest is `train`.

    Multi-label papers are stratified by their rarest label (in the whole table), so that every label, the long
    tail's too, has its share in each split; a label that is the rarest of too few papers to be shared out has its
    papers stratified with the most frequent label's."""
    names = label_names_of(table)
    if is_multi_label_table(table):
        frequency = Counter(label for labels in table[LABEL_COLUMN] for label in labels)
        rarest = [min(labels, key=lambda label: (frequency[label], label)) for labels in table[LABEL_COLUMN]]
        strata = Counter(rarest)
        common = strata.most_common(1)[0][0]
        rarest = [label if strata[label] >= len(held_out) + 1 else common for label in rarest]
        split = stratified_split(
            table.add_column(STRATUM_COLUMN, rarest)
            .cast_column(STRATUM_COLUMN, ClassLabel(names=names))
            .rename_columns({LABEL_COLUMN: "_labels", STRATUM_COLUMN: LABEL_COLUMN}),
            held_out,
            seed,
        )
        return DatasetDict(
            {
                name: part.remove_columns(LABEL_COLUMN).rename_column("_labels", LABEL_COLUMN)
                for name, part in split.items()
            }
        )
    counts = Counter(table[LABEL_COLUMN])
    smallest = min(counts, key=counts.get)
    if counts[smallest] < len(held_out) + 1:
        raise DataError(
            f"class {names[smallest]!r} has only {counts[smallest]} paper(s); a stratified split into train and "
            f"{' and '.join(held_out)} needs at least {len(held_out) + 1} per class (or give the splits as files)"
        )
    remaining, splits = 1.0, {}
    try:
        for name, size in held_out.items():
            parts = table.train_test_split(test_size=size / remaining, stratify_by_column=LABEL_COLUMN, seed=seed)
            table, splits[name] = parts["train"], parts["test"]
            remaining -= size
    except ValueError as error:
        raise DataError(f"cannot split {len(table)} papers of {len(counts)} classes: {error}") from error
    return DatasetDict(train=table, **splits)


class PaperSplits(DatasetDict):
    """The splits of `load_papers`, with `cleaning`: what cleaning found and removed, for the reports."""

    cleaning: dict = {}


def unify_label_case(
    tables: dict[str, Dataset], multi_label: bool = False
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """Labels that differ only in case (`cs.AI`, `CS.AI`) are one class, spelled as its most frequent
    spelling; returns the tables and the spellings replaced ({old: new})."""
    counts = Counter(
        name for table in tables.values() for text in table["label_name"] for name in label_list(text, multi_label)
    )
    spelling = {}
    for name, _ in counts.most_common():
        spelling.setdefault(name.casefold(), name)
    renamed = {name: spelling[name.casefold()] for name in sorted(counts) if spelling[name.casefold()] != name}
    if not renamed:
        return tables, renamed
    logger.warning(
        "labels that differ only in case are one class: %s",
        ", ".join(f"{old!r} -> {new!r}" for old, new in renamed.items()),
    )

    def respell(batch):
        return {
            "label_name": [
                " ".join(sorted({spelling[name.casefold()] for name in label_list(text, multi_label)}))
                for text in batch["label_name"]
            ]
        }

    return {name: table.map(respell, batched=True, desc="Unifying labels") for name, table in tables.items()}, renamed


def remove_duplicates(train: Dataset, held_out: dict[str, Dataset], source: str) -> tuple[Dataset, dict]:
    """Drops the training papers whose words (title and abstract, normalised as the tokenizer does) repeat an
    earlier paper's, or a paper's of a given validation or test file, so that no paper is both trained and
    tested on; counts them, and the near-empty papers, in the returned report."""
    normalizer = build_word_tokenizer({}).normalizer

    def key(title, abstract):
        return tuple(" ".join(normalizer.normalize_str(text).split()) for text in (title, abstract))

    held_out_keys = {key(t, a) for table in held_out.values() for t, a in zip(table["title"], table["abstract"])}
    first_label, keep = {}, []
    report = {
        "duplicates_removed": 0,
        "duplicates_with_another_label": 0,
        "also_in_validation_or_test_file": 0,
        "near_empty_papers": sum(len(" ".join(k).split()) < NEAR_EMPTY_WORDS for k in held_out_keys),
    }
    for index, (title, abstract, label) in enumerate(zip(train["title"], train["abstract"], train["label_name"])):
        paper = key(title, abstract)
        if paper in held_out_keys:
            report["also_in_validation_or_test_file"] += 1
        elif paper in first_label:
            report["duplicates_removed"] += 1
            report["duplicates_with_another_label"] += first_label[paper] != label
        else:
            first_label[paper] = label
            keep.append(index)
            report["near_empty_papers"] += len(" ".join(paper).split()) < NEAR_EMPTY_WORDS
    removed = report["duplicates_removed"] + report["also_in_validation_or_test_file"]
    log = logger.warning if removed or report["near_empty_papers"] else logger.info
    log(
        "%s: removed %d duplicate paper(s) (%d of them labelled differently) and %d also in the validation or test "
        "file; %d paper(s) have fewer than %d words",
        source,
        report["duplicates_removed"],
        report["duplicates_with_another_label"],
        report["also_in_validation_or_test_file"],
        report["near_empty_papers"],
        NEAR_EMPTY_WORDS,
    )
    return (train.select(keep) if removed else train), report


def load_papers(
    data_args, seed: int = 42, label_names: list[str] | None = None, multi_label: bool = False
) -> DatasetDict:
    """Reads, cleans, labels and splits the papers described by `DataArguments` (`multi_label`: each paper's
    labels, space-separated or a list).

    Cleaning: labels that differ only in case are merged, exact duplicates are removed before splitting
    (see `remove_duplicates`); what it did is in the returned splits' `cleaning`.

    `label_names` fixes the label ids (fine-tuning a model on its own labels); otherwise they are the
    sorted class names of the training table (restricted to `data_args.labels` when given). The split is
    seeded with `data_args.split_seed`, or `seed` when that is None.
    """
    if (data_args.train_file is None) == (data_args.dataset_name is None):
        raise UserError("give exactly one of --train_file or --dataset_name")
    source = data_args.train_file or data_args.dataset_name
    columns = (data_args.title_column, data_args.abstract_column, data_args.label_column)
    train = prepare_table(
        read_table(data_args.train_file, data_args.dataset_name, data_args.dataset_config, data_args.dataset_split),
        *columns,
        source=source,
        multi_label=multi_label,
    )
    extra = {
        name: prepare_table(read_table(path), *columns, source=path, multi_label=multi_label)
        for name, path in (("validation", data_args.validation_file), ("test", data_args.test_file))
        if path is not None
    }
    tables, renamed = unify_label_case({"train": train, **extra}, multi_label)
    train, extra = tables.pop("train"), tables
    if data_args.labels:
        wanted = set(data_args.labels)
        check_labels_present(wanted, train, source, multi_label)
        train = keep_labels(train, wanted, multi_label)
        extra = {name: keep_labels(table, wanted, multi_label) for name, table in extra.items()}
        if len(train) == 0:
            raise DataError(f"{source}: no paper has one of the labels {sorted(wanted)}")
    if not multi_label:
        check_single_names(train.unique("label_name"), source)
    if label_names is None:
        label_names = sorted({name for text in train.unique("label_name") for name in label_list(text, multi_label)})
    if len(label_names) < 2:
        raise DataError(f"{source}: a classifier needs at least 2 classes, found {label_names}")
    if multi_label:
        check_no_constant_label(train, source)

    train, cleaning = remove_duplicates(train, extra, source)
    cleaning["labels_merged_by_case"] = renamed
    train = encode_labels(train, label_names, source, multi_label)
    extra = {name: encode_labels(table, label_names, name, multi_label) for name, table in extra.items()}
    sizes = {"test": data_args.test_size, "validation": data_args.validation_size}
    split_seed = seed if data_args.split_seed is None else data_args.split_seed
    splits = PaperSplits(
        stratified_split(train, {name: size for name, size in sizes.items() if name not in extra}, split_seed)
    )
    splits.update(extra)
    splits.cleaning = cleaning
    if data_args.max_train_samples is not None:
        kept = min(data_args.max_train_samples, len(splits["train"]))
        splits["train"] = splits["train"].shuffle(seed=seed).select(range(kept))
    if len(splits["train"]) < 2:
        raise DataError(
            f"{source}: {len(splits['train'])} training paper(s) after cleaning and splitting; training "
            "needs at least 2 (BatchNorm trains on the spread of a batch): give more papers"
        )
    for name, split in splits.items():
        logger.info("%s: %d papers", name, len(split))
    return splits


def check_single_names(label_texts: list[str], source: str) -> None:
    """Refuses single-label papers whose labels list several of the other labels (`cs.CV cs.LG` beside `cs.CV` and
    `cs.LG`): read as one label each, every combination would be a class of its own."""
    names = set(label_texts)
    combined = sorted(
        text for text in names if len(parts := NAME_SEPARATORS.split(text)) > 1 and all(part in names for part in parts)
    )
    if combined:
        raise DataError(
            f"{source}: labels such as {combined[0]!r} list several of the other labels; to give each "
            "paper every label it lists, train with --problem_type multi_label_classification"
        )


def check_labels_present(wanted: set[str], train: Dataset, source: str, multi_label: bool) -> None:
    """Refuses `--labels` that name a label no training paper has (a typo would silently train without it)."""
    present = {name for text in train.unique("label_name") for name in label_list(text, multi_label)}
    absent = sorted(wanted - present)
    if absent:
        raise DataError(
            f"{source}: --labels {' '.join(absent)}: no paper has {'it' if len(absent) == 1 else 'them'}; the "
            f"labels are {shown_list(sorted(present))}: fix the names or drop them"
        )


def check_no_constant_label(train: Dataset, source: str) -> None:
    """Refuses multi-label papers that all list one label: nothing shows the model when not to give it (and its
    balanced weight, negatives over positives, would be 0)."""
    counts = Counter(name for text in train["label_name"] for name in text.split(" "))
    everywhere = sorted(name for name, count in counts.items() if count == len(train))
    if everywhere:
        raise DataError(
            f"{source}: every paper is labelled {everywhere[0]}, so the model cannot learn when not to give it: "
            f"leave it out with --labels (the other labels), or add papers without it"
        )


def keep_labels(table: Dataset, wanted: set[str], multi_label: bool) -> Dataset:
    """The papers of `table` with one of the `wanted` labels; a multi-label paper keeps only those of its labels."""
    if multi_label:

        def restrict(batch):
            return {
                "label_name": [
                    " ".join(name for name in text.split(" ") if name in wanted) for text in batch["label_name"]
                ]
            }

        table = table.map(restrict, batched=True, desc="Keeping --labels")
        return table.filter(lambda batch: [bool(text) for text in batch["label_name"]], batched=True)
    return table.filter(lambda batch: [n in wanted for n in batch["label_name"]], batched=True, desc="Keeping --labels")


def papers_digest(splits: DatasetDict) -> str:
    """A digest of every split's papers (texts and labels), in order: a run resumed from a checkpoint must go on
    with the same."""
    import hashlib
    import json

    digest = hashlib.sha256()
    for name in sorted(splits):
        for batch in splits[name].select_columns(["title", "abstract", LABEL_COLUMN]).iter(batch_size=1000):
            digest.update(json.dumps([name, batch]).encode())
    return digest.hexdigest()[:16]


def training_texts(train: Dataset):
    """Every title and abstract of the training split, in batches, for learning the vocabulary."""
    for start in range(0, len(train), 1000):
        batch = train[start : start + 1000]
        yield from batch["title"]
        yield from batch["abstract"]


def tokenize_papers(papers: Dataset | DatasetDict, tokenizer) -> Dataset | DatasetDict:
    """Encodes papers (one table or every split) once into Arrow; padding is left to the collator, per batch."""

    tables = papers.values() if isinstance(papers, DatasetDict) else [papers]
    label_count = next(
        (len(label_names_of(t)) for t in tables if LABEL_COLUMN in t.column_names and is_multi_label_table(t)), None
    )
    replaced = list(TEXT_COLUMNS)
    if label_count is not None:
        # The model's binary cross-entropy takes multi-hot rows (one 0/1 per label) in place of the label ids.
        papers = papers.rename_column(LABEL_COLUMN, LABEL_IDS_COLUMN)
        replaced.append(LABEL_IDS_COLUMN)

    def encode(batch):
        encoded = tokenizer(batch["title"], batch["abstract"])
        if label_count is not None:
            encoded[LABEL_COLUMN] = [[float(i in ids) for i in range(label_count)] for ids in batch[LABEL_IDS_COLUMN]]
        return encoded

    return papers.map(encode, batched=True, remove_columns=replaced, desc="Tokenizing")
