"""A file of papers as every command reads it: its format from its name (CSV, TSV, JSON, JSON Lines, Parquet; the
text ones also gzip-compressed, `papers.csv.gz`), checked against what its first bytes say it is, and its text as
Excel and other tools write it (a UTF-8 byte-order mark is not part of the first column's name; CRLF line ends).

`papers_format` is the one check: a name of no known format, a missing or unreadable file, and a file whose
content is not what its name says (compressed, a zip archive such as an Excel workbook, a Parquet file, UTF-16 or
binary where the name says text) are refused in one line before anything is read as papers.
"""

import codecs
import gzip
from pathlib import Path

from .errors import DataError

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
GZIP_SUFFIX = ".gz"
GZIP_MAGIC = b"\x1f\x8b"
# What a file's first bytes say it is where its name says text ({fmt}), and what to do about it ({name}: its name).
NOT_TEXT = {
    GZIP_MAGIC: ("is gzip-compressed, not {fmt} text", "name it {name}.gz"),
    b"BZh": ("is bzip2-compressed, not {fmt} text", "decompress it, or compress it with gzip (.gz)"),
    b"\xfd7zXZ\x00": ("is xz-compressed, not {fmt} text", "decompress it, or compress it with gzip (.gz)"),
    b"\x28\xb5\x2f\xfd": ("is zstd-compressed, not {fmt} text", "decompress it, or compress it with gzip (.gz)"),
    b"PK\x03\x04": ("is a zip archive (an Excel workbook is one), not {fmt} text", "save it as CSV UTF-8, or unzip it"),
    b"PAR1": ("is a Parquet file, not {fmt} text", "name it .parquet"),
    b"\xff\xfe": ("is not UTF-8 text (it is UTF-16)", "save it as UTF-8"),
    b"\xfe\xff": ("is not UTF-8 text (it is UTF-16)", "save it as UTF-8"),
}


def format_of_name(path: str) -> str | None:
    """The format a file's name says (`csv`, `json` or `parquet`; a text format may end in `.gz`), or None."""
    name = Path(path).name.lower()
    compressed = name.endswith(GZIP_SUFFIX)
    fmt = FORMATS.get(Path(name.removesuffix(GZIP_SUFFIX)).suffix)
    return None if compressed and fmt == "parquet" else fmt


def csv_delimiter(path: str) -> str:
    """A tab for a `.tsv` file, a comma for a `.csv` one."""
    return "\t" if str(path).lower().removesuffix(GZIP_SUFFIX).endswith(".tsv") else ","


def is_gzipped(path: str) -> bool:
    return str(path).lower().endswith(GZIP_SUFFIX)


def papers_format(path: str) -> str:
    """The format of the papers file `path`, from its name, once the file is found readable and its first bytes
    agree with the name; a one-line `DataError` otherwise."""
    fmt = format_of_name(path)
    if fmt is None:
        raise DataError(
            f"{path}: unknown format; use one of {', '.join(sorted(FORMATS))} (the text ones may be gzip-compressed: "
            ".csv.gz)"
        )
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror}): check its permissions") from None
    if is_gzipped(path):
        if not head.startswith(GZIP_MAGIC):
            raise DataError(f"{path}: is not gzip-compressed, though its name ends in .gz: remove the .gz")
        return fmt
    if fmt == "parquet" or b"\x00" not in head and _is_utf8(head):
        return fmt  # pyarrow says what is wrong with a file that is not Parquet; the readers name a bad byte
    for signature, (what, advice) in NOT_TEXT.items():
        if head.startswith(signature):
            raise DataError(f"{path}: {what.format(fmt=fmt.upper())}: {advice.format(name=Path(path).name)}")
    if b"\x00" in head:
        raise DataError(f"{path}: is not text (it holds NUL bytes): give a UTF-8 {fmt.upper()} file")
    return fmt


def _is_utf8(head: bytes) -> bool:
    """Whether the first bytes of a file are UTF-8 (the last character may be cut off)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def open_text(path: str, errors: str = "strict"):
    """The file's text (decompressed when its name ends in `.gz`), without a UTF-8 byte-order mark; lines as
    written (`newline=""`, as the `csv` module wants)."""
    if is_gzipped(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors=errors, newline="")
    return open(path, encoding="utf-8-sig", errors=errors, newline="")


def open_bytes(path: str):
    """The file's bytes (decompressed when its name ends in `.gz`)."""
    return gzip.open(path, "rb") if is_gzipped(path) else open(path, "rb")
