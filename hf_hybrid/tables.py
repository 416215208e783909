"""One table of papers: read (a local file, its format from its name, or a split of a Hub dataset), its title,
abstract and label columns checked and cleaned, and its label names read (one per paper, or a multi-label paper's
list: `cs.CV cs.LG`, `cs.CV,cs.LG` or a list column) and encoded as integer `labels`."""

import logging
import re

from datasets import ClassLabel, Dataset, Features, Sequence, Value, load_dataset

from .errors import DataError
from .input_files import csv_delimiter, open_text, papers_format

logger = logging.getLogger(__name__)

LABEL_COLUMN = "labels"


def read_table(
    path: str | None = None, dataset_name: str | None = None, config: str | None = None, split: str = "train"
) -> Dataset:
    """Reads a local file (its format chosen by extension) or one split of a Hub dataset."""
    if path is not None:
        reader = papers_format(path)
        if reader in ("csv", "json") and _has_no_rows(path, header_lines=1 if reader == "csv" else 0):
            raise DataError(f"{path}: has no rows")
        # Only empty cells are missing: a title that reads "NA", "null", "None" or "nan" is text.
        options = {"keep_default_na": False, "delimiter": csv_delimiter(path)} if reader == "csv" else {}
        source = path
        load = lambda: load_dataset(reader, data_files=path, split="train", **options)  # noqa: E731
    else:
        source = dataset_name
        load = lambda: load_dataset(dataset_name, config, split=split)  # noqa: E731
    try:
        table = load()
    except Exception as error:  # datasets raises many types; the user needs the cause in one line
        cause = error.__cause__ or error
        if isinstance(cause, UnicodeDecodeError):
            raise DataError(
                f"{source}: is not UTF-8 text (it holds byte {cause.object[cause.start]:#x}): save it as UTF-8"
            ) from error
        raise DataError(f"{source}: could not be read ({type(cause).__name__}: {cause})") from error
    if len(table) == 0:
        raise DataError(f"{source}: has no rows")
    return table


def _has_no_rows(path: str, header_lines: int) -> bool:
    with open_text(path, errors="replace") as handle:
        for count, _ in enumerate(line for line in handle if line.strip()):
            if count >= header_lines:
                return False
    return True


def prepare_table(
    table: Dataset,
    title_column: str,
    abstract_column: str,
    label_column: str,
    source: str = "data",
    multi_label: bool = False,
) -> Dataset:
    """Keeps the three columns as `title`, `abstract`, `label_name`, with missing texts as empty strings,
    and drops papers that have neither a title nor an abstract. `multi_label`: `label_name` is the paper's
    labels, sorted and space-separated, read from space-separated text or a list of names."""
    wanted = {title_column: "title", abstract_column: "abstract", label_column: "label_name"}
    missing = [column for column in wanted if column not in table.column_names]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; it has {', '.join(table.column_names)}")
    # Lists, objects or bytes where text belongs would become their Python spelling, read as words.
    names_allowed = {label_column} if multi_label else set()
    not_text = [
        f"{column} ({table.features[column]})"
        for column in wanted
        if not (_holds_text(table, column) or column in names_allowed and _holds_names(table, column))
    ]
    if not_text:
        raise DataError(f"{source}: column(s) {', '.join(not_text)} should hold text, one value per paper")
    table = table.select_columns(list(wanted)).rename_columns({k: v for k, v in wanted.items() if k != v})

    def clean(batch):
        return {
            "title": [str(text or "").strip() for text in batch["title"]],
            "abstract": [str(text or "").strip() for text in batch["abstract"]],
            "label_name": [_label_text(label, multi_label, source) for label in batch["label_name"]],
        }

    text = Features({name: Value("string") for name in ("title", "abstract", "label_name")})
    table = table.map(clean, batched=True, features=text, desc="Cleaning")
    kept = table.filter(
        lambda batch: [
            bool(title or abstract) and bool(label)
            for title, abstract, label in zip(batch["title"], batch["abstract"], batch["label_name"])
        ],
        batched=True,
        desc="Dropping empty papers",
    )
    if len(kept) < len(table):
        logger.warning(
            "%s: dropped %d of %d papers with no text or no label", source, len(table) - len(kept), len(table)
        )
    if len(kept) == 0:
        raise DataError(f"{source}: no paper has a title or an abstract and a label")
    return kept


def _label_text(label, multi_label: bool, source: str = "data") -> str | None:
    """A paper's label as one string: its name with runs of spaces collapsed (written as a list of one name: that
    name), or, `multi_label`, its distinct names (see `listed_names`), sorted and space-separated."""
    if label is None:
        return None
    if not multi_label:
        if _is_list_text(label):
            label = " ".join(listed_names(label, source))
        return " ".join(str(label).split())
    return " ".join(sorted(set(listed_names(label, source)))) or None


# What separates the names of a multi-label cell.
NAME_SEPARATORS = re.compile(r"[\s,]+")


def listed_names(label, source: str = "data") -> list[str]:
    """The label names of a multi-label cell: a list of names, the text of a list as pandas or JSON write one
    (`['cs.CV', 'cs.LG']`, `["cs.CV", "cs.LG"]`), or names separated by spaces, commas or both (`cs.CV cs.LG`,
    `cs.CV,cs.LG`, `cs.CV, cs.LG`). A cell that is none of these (a list cut short) is refused, naming it."""
    if isinstance(label, list):
        items = [item for item in label if item is not None]
    elif _is_list_text(label):
        items = [item.strip().strip("'\"") for item in str(label).strip()[1:-1].split(",")]
    else:
        items = [label]
    names = [name for item in items for name in NAME_SEPARATORS.split(str(item)) if name]
    if any(set(name) & set("[]'\"") for name in names):
        raise DataError(
            f"{source}: the label cell {label!r} is neither names separated by spaces or commas nor a list of "
            "names: write it as cs.CV cs.LG or ['cs.CV', 'cs.LG']"
        )
    return names


def _is_list_text(label) -> bool:
    text = str(label).strip()
    return text.startswith("[") and text.endswith("]")


def label_list(label_name: str, multi_label: bool) -> list[str]:
    """The label names a `label_name` of `prepare_table` holds."""
    return label_name.split(" ") if multi_label else [label_name]


def _holds_names(table: Dataset, column: str) -> bool:
    """Whether `column` holds a list of label names (or of numbers) per paper."""
    feature = table.features[column]
    inner = getattr(feature, "feature", None)
    return isinstance(inner, Value) and inner.dtype != "binary"


def _holds_text(table: Dataset, column: str) -> bool:
    """Whether every value of `column` is text, a number or missing (a column of mixed types is checked value
    by value)."""
    feature = table.features[column]
    if isinstance(feature, Value):
        return feature.dtype != "binary"
    return all(value is None or isinstance(value, (str, int, float)) for value in table[column])


def encode_labels(table: Dataset, label_names: list[str], source: str = "data", multi_label: bool = False) -> Dataset:
    """Turns `label_name` into integer `labels` following `label_names` (`multi_label`: each paper's list of label
    ids); unknown labels are an error."""
    present = {name for text in table.unique("label_name") for name in label_list(text, multi_label)}
    unknown = sorted(present - set(label_names))
    if unknown:
        listing = next((name for name in unknown if " " in name), None)
        hint = (
            f": labels such as {listing!r} list several names, and this is a single-label model (papers of several "
            "labels need a multi-label one)"
            if listing and not multi_label
            else ""
        )
        raise DataError(
            f"{source}: labels {shown_list(unknown)} are not among the model's {shown_list(label_names)}{hint}"
        )
    index = {name: i for i, name in enumerate(label_names)}
    if multi_label:

        def encode(batch):
            return {LABEL_COLUMN: [[index[n] for n in text.split(" ")] for text in batch["label_name"]]}
    else:

        def encode(batch):
            return {LABEL_COLUMN: [index[n] for n in batch["label_name"]]}

    table = table.map(encode, batched=True, remove_columns=["label_name"], desc="Encoding labels")
    label = ClassLabel(names=list(label_names))
    return table.cast_column(LABEL_COLUMN, Sequence(label) if multi_label else label)


def label_names_of(table: Dataset) -> list[str]:
    """The label names of a table's `labels` column (single- or multi-label)."""
    feature = table.features[LABEL_COLUMN]
    return list((feature.feature if isinstance(feature, Sequence) else feature).names)


def is_multi_label_table(table: Dataset) -> bool:
    return isinstance(table.features[LABEL_COLUMN], Sequence)


def shown_list(names: list[str], shown: int = 20) -> str:
    """`names` for an error line, as a list: the first `shown`, then how many more."""
    return f"{names[:shown]}" + (f" and {len(names) - shown} more" if len(names) > shown else "")
