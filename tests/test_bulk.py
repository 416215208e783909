"""Bulk prediction (`hf-hybrid predict --input_file`, `hf_hybrid.bulk`): the pipeline's results, in input order,
from CSV, JSON Lines and Parquet; resuming after a kill; shards and their merge."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import with_trained_batch_norms
from papers import make_papers

from hf_hybrid import ArxivClassificationPipeline, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
from hf_hybrid.bulk import read_chunks
from hf_hybrid.cli import main
from hf_hybrid.errors import DataError

# Papers with what bulk reading must keep: empty fields, accents, out-of-vocabulary words, a title that reads
# "None", a field longer than the model reads.
ODD_PAPERS = [
    {"title": "", "abstract": "Deep networks for image recognition."},
    {"title": "Schrödinger error-correction, unheard-of words", "abstract": ""},
    {"title": "None", "abstract": "nan"},
    {"title": "", "abstract": ""},
    {"title": "language " * 20, "abstract": "attention " * 40},
]


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory, make_tiny_config, tiny_tokenizer):
    """A tiny model with the wide branch (so results have `branch_scores`), calibrated, with trained BatchNorms."""
    torch.manual_seed(1)
    config = make_tiny_config(wide_branch=True, wide_bigram_buckets=64, calibration_temperature=1.3)
    model = with_trained_batch_norms(HybridCNNLSTMForSequenceClassification(config)).eval()
    with torch.no_grad():
        model.wide.weight.normal_(0.0, 0.5)
    path = tmp_path_factory.mktemp("wide_model")
    ArxivClassificationPipeline(model=model, tokenizer=tiny_tokenizer).save_pretrained(str(path))
    return path


def paper_rows(n_per_class=12, seed=3):
    papers = [{"title": p["title"], "abstract": p["abstract"]} for p in make_papers(n_per_class, seed=seed)]
    papers[5:5] = ODD_PAPERS
    return [{"paper_id": f"id{i:04d}", **paper} for i, paper in enumerate(papers)]


def write_input(path, rows):
    table = pa.Table.from_pylist(rows)
    if path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=7)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_results(got, expected):
    """The same labels and words, the same fields, probabilities and weights up to float32 summation order."""
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        assert list(mine) == list(theirs)
        for key, value in theirs.items():
            if key in ("title_words", "abstract_words"):
                assert [(w["word"], w["position"]) for w in mine[key]] == [(w["word"], w["position"]) for w in value]
                assert [w["attention"] for w in mine[key]] == pytest.approx([w["attention"] for w in value], abs=1e-5)
            elif key == "top_labels":
                assert [t["label"] for t in mine[key]] == [t["label"] for t in value]
            elif isinstance(value, dict):
                assert mine[key] == pytest.approx(value, abs=1e-5)
            elif isinstance(value, float):
                assert mine[key] == pytest.approx(value, abs=1e-5)
            else:
                assert mine[key] == value, key


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_file_gets_the_pipelines_results_in_input_order(suffix, wide_model_dir, tmp_path):
    rows = paper_rows()
    source = write_input(tmp_path / f"papers{suffix}", rows)
    classify = ArxivClassificationPipeline(
        model=HybridCNNLSTMForSequenceClassification.from_pretrained(wide_model_dir),
        tokenizer=HybridCNNLSTMTokenizer.from_pretrained(wide_model_dir),
    )
    papers = [{"title": r["title"], "abstract": r["abstract"]} for r in rows]
    threshold = sorted(result["score"] for result in classify(papers))[len(rows) // 2]  # half of them abstain
    expected = classify(papers, top_words=20, top_k=2, threshold=threshold)

    output = tmp_path / "predictions.jsonl"
    flags = ["--top_k", "2", "--threshold", str(threshold), "--top_words", "20"]
    assert (
        main(
            [
                "predict",
                "--model",
                str(wide_model_dir),
                "--input_file",
                str(source),
                "--output_file",
                str(output),
                "--id_column",
                "paper_id",
                "--chunk_size",
                "7",
                "--batch_size",
                "3",
                *flags,
            ]
        )
        == 0
    )
    got = read_jsonl(output)
    assert [line.pop("paper_id") for line in got] == [row["paper_id"] for row in rows]
    assert {"branch_scores", "needs_review", "top_labels"} <= set(expected[0])
    assert any(line["needs_review"] for line in got) and not all(line["needs_review"] for line in got)
    assert_same_results(got, expected)


def test_parquet_output_holds_the_same_records_and_no_fold_the_same_labels(wide_model_dir, tmp_path):
    rows = paper_rows()
    source = write_input(tmp_path / "papers.csv", rows)
    jsonl, parquet, unfolded = tmp_path / "out.jsonl", tmp_path / "out_parquet", tmp_path / "unfolded.jsonl"
    common = [
        "predict",
        "--model",
        str(wide_model_dir),
        "--input_file",
        str(source),
        "--id_column",
        "paper_id",
        "--chunk_size",
        "10",
        "--threshold",
        "0.45",
    ]
    assert main([*common, "--output_file", str(jsonl)]) == 0
    assert main([*common, "--output_file", str(parquet), "--output_format", "parquet"]) == 0
    assert main([*common, "--output_file", str(unfolded), "--no_fold"]) == 0
    parts = sorted(path.name for path in parquet.glob("*.parquet"))
    assert parts == [f"part-{start:012d}.parquet" for start in range(0, len(rows), 10)]
    table = pa.concat_tables(pq.read_table(parquet / name) for name in parts)
    assert_same_results(table.to_pylist(), read_jsonl(jsonl))
    assert_same_results(read_jsonl(unfolded), read_jsonl(jsonl))


def test_top_words_zero_turns_the_words_off(saved_model_dir, tmp_path, capsys):
    source = write_input(tmp_path / "papers.jsonl", paper_rows(2))
    assert main(["predict", "--model", str(saved_model_dir), "--input_file", str(source), "--top_words", "0"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(paper_rows(2))
    assert all(line["title_words"] == [] and line["abstract_words"] == [] for line in lines)


def test_chunks_are_bounded_and_in_order(tmp_path):
    rows = paper_rows()
    source = write_input(tmp_path / "papers.parquet", rows)
    chunks = list(
        read_chunks(
            str(source),
            ["title", "abstract", "paper_id"],
            "paper_id",
            chunk_size=4,
            skip=3,
            num_shards=2,
            shard_index=1,
        )
    )
    assert [len(chunk) for chunk in chunks[:-1]] == [4] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= 4
    assert [i for chunk in chunks for i in chunk.column("paper_id").to_pylist()] == [
        row["paper_id"] for row in rows[1::2][3:]
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--id_column", "doi"], "missing column(s) doi"),
        (["--num_shards", "2", "--shard_index", "2"], "--shard_index 2 is out of range for --num_shards 2"),
        (["--id_column", "score"], "--id_column score: results have a field of that name"),
        (["--output_format", "parquet"], "--output_format parquet needs --output_file"),
    ],
)
def test_bad_bulk_flags_are_one_line_errors(flags, message, saved_model_dir, tmp_path, capsys):
    rows = [{**row, "score": 1} for row in paper_rows(1)]
    source = write_input(tmp_path / "papers.csv", rows)
    assert main(["predict", "--model", str(saved_model_dir), "--input_file", str(source), *flags]) == 1
    assert message in capsys.readouterr().err


def test_an_output_of_other_settings_or_other_origin_is_refused(saved_model_dir, tmp_path, capsys):
    source = write_input(tmp_path / "papers.csv", paper_rows(2))
    output = tmp_path / "out.jsonl"
    command = ["predict", "--model", str(saved_model_dir), "--input_file", str(source), "--output_file", str(output)]
    assert main(command) == 0
    capsys.readouterr()
    assert main([*command, "--top_k", "2"]) == 1
    assert "was written with other settings (top_k None -> 2)" in capsys.readouterr().err
    assert main([*command, "--top_k", "2", "--overwrite"]) == 0
    assert all("top_labels" in line for line in read_jsonl(output))
    other = tmp_path / "other.jsonl"
    other.write_text("{}\n")
    assert main([*command[:-1], str(other)]) == 1
    assert "exists and was not written by a bulk prediction" in capsys.readouterr().err


def test_files_as_excel_and_gzip_write_them_give_the_results_of_plain_ones(wide_model_dir, tmp_path):
    import csv
    import gzip

    rows = paper_rows(4)
    plain = write_input(tmp_path / "plain.csv", rows)
    # Excel's "CSV UTF-8": a byte-order mark before the first column's name and CRLF line ends.
    excel = tmp_path / "excel.csv"
    with open(excel, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
    assert excel.read_bytes().startswith(b"\xef\xbb\xbfpaper_id,") and b"\r\n" in excel.read_bytes()
    lines = write_input(tmp_path / "lines.jsonl", rows)
    excel_lines = tmp_path / "excel_lines.jsonl"
    excel_lines.write_bytes(b"\xef\xbb\xbf" + lines.read_bytes().replace(b"\n", b"\r\n"))
    zipped = {}
    for source in (plain, lines):
        zipped[source] = tmp_path / f"zipped_{source.name}.gz"
        zipped[source].write_bytes(gzip.compress(source.read_bytes()))

    def results(source, *flags):
        output = tmp_path / f"{source.name}.out.jsonl"
        argv = ["predict", "--model", str(wide_model_dir), "--input_file", str(source), "--output_file", str(output)]
        assert main([*argv, *flags]) == 0
        return read_jsonl(output)

    expected = results(plain, "--id_column", "paper_id")
    assert [line["paper_id"] for line in expected] == [row["paper_id"] for row in rows]
    for source in (excel, excel_lines, zipped[plain], zipped[lines]):  # before: "missing column(s) paper_id"
        assert results(source, "--id_column", "paper_id") == expected, source.name
    # The byte-order mark is not part of the first column's name with the id column left out either.
    bom_first = tmp_path / "title_first.csv"
    bom_first.write_bytes(
        b"\xef\xbb\xbf"
        + write_input(tmp_path / "t.csv", [{"title": r["title"], "abstract": r["abstract"]} for r in rows]).read_bytes()
    )
    assert [line["scores"] for line in results(bom_first)] == [line["scores"] for line in expected]


def test_training_and_evaluation_read_the_same_files(tmp_path):
    import gzip

    from hf_hybrid.tables import read_table

    rows = [{**row, "category": "cs.AI"} for row in paper_rows(2)]
    plain = write_input(tmp_path / "plain.csv", rows)
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes().replace(b"\n", b"\r\n"))
    zipped = tmp_path / "zipped.csv.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    lines = write_input(tmp_path / "lines.jsonl", rows)
    zipped_lines = tmp_path / "zipped.jsonl.gz"
    zipped_lines.write_bytes(gzip.compress(lines.read_bytes()))
    expected = read_table(str(plain)).to_list()
    for source in (excel, zipped, lines, zipped_lines):
        assert read_table(str(source)).to_list() == expected, source.name


# ------------------------------------------------------------------------------------------------ resuming

# Runs `hf-hybrid predict` with the output's writes stopped after `STOP_AFTER` chunks: the last one cut after
# `CUT` bytes (a line torn by the kill), then the process waits to be killed. The test kills it with SIGKILL.
STOPPED_RUN = textwrap.dedent("""
    import os, sys, threading
    from hf_hybrid.bulk.writing import JsonLinesOutput, ParquetOutput, json_lines, part_name
    from hf_hybrid.cli import main

    stop_after, cut, marker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    calls = []

    def stop(write):
        def stopping(self, records, ids, start):
            calls.append(1)
            if len(calls) <= stop_after:
                return write(self, records, ids, start)
            if isinstance(self, JsonLinesOutput):
                self.handle.write(json_lines(records, ids)[:cut])
                self.handle.flush()
            else:  # a part file half written under its temporary name
                (self.path / (part_name(start) + ".tmp")).write_bytes(b"PAR1 torn")
            open(marker, "w").close()
            threading.Event().wait()
        return stopping

    JsonLinesOutput.write = stop(JsonLinesOutput.write)
    ParquetOutput.write = stop(ParquetOutput.write)
    main(sys.argv[4:])
""")


def killed_run(command, tmp_path, stop_after, cut):
    marker = tmp_path / f"stopped-{stop_after}-{cut}"
    process = subprocess.Popen(
        [sys.executable, "-c", STOPPED_RUN, str(stop_after), str(cut), str(marker), *command],
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        stderr=subprocess.PIPE,
        text=True,
    )
    while not marker.exists():  # no timing: the process says when it has stopped
        if process.poll() is not None:
            raise AssertionError(f"the run ended before it was stopped: {process.stderr.read()[-2000:]}")
        try:
            process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("output_format", ["jsonl", "parquet"])
def test_a_killed_run_resumes_with_every_row_exactly_once_in_order(output_format, saved_model_dir, tmp_path):
    rows = paper_rows()
    source = write_input(tmp_path / "papers.csv", rows)
    output = tmp_path / f"out.{output_format}"
    command = [
        "predict",
        "--model",
        str(saved_model_dir),
        "--input_file",
        str(source),
        "--output_file",
        str(output),
        "--output_format",
        output_format,
        "--id_column",
        "paper_id",
        "--chunk_size",
        "8",
    ]
    reference = tmp_path / "reference.jsonl"
    assert main([*command[:6], str(reference), *command[9:]]) == 0

    killed_run(command, tmp_path, stop_after=2, cut=150)  # killed in the middle of a line of the third chunk
    if output_format == "jsonl":
        assert len(output.read_text().splitlines()) == 2 * 8 + 1 and not output.read_text().endswith("\n")
    killed_run(command, tmp_path, stop_after=1, cut=0)  # resumed, killed again between chunks
    assert main(command) == 0
    if output_format == "jsonl":
        got = read_jsonl(output)
    else:
        assert not list(output.glob("*.tmp"))
        got = pa.concat_tables(pq.read_table(part) for part in sorted(output.glob("part-*.parquet"))).to_pylist()
    assert [line["paper_id"] for line in got] == [row["paper_id"] for row in rows]
    assert_same_results(got, read_jsonl(reference))
    assert main(command) == 0  # a complete output is left as it is
    assert [line["paper_id"] for line in (read_jsonl(output) if output_format == "jsonl" else got)] == [
        row["paper_id"] for row in rows
    ]


def test_an_output_is_not_continued_from_an_input_whose_content_changed(saved_model_dir, tmp_path, capsys):
    rows = paper_rows()
    source = write_input(tmp_path / "papers.csv", rows)
    output = tmp_path / "out.jsonl"
    command = [
        "predict",
        "--model",
        str(saved_model_dir),
        "--input_file",
        str(source),
        "--output_file",
        str(output),
        "--id_column",
        "paper_id",
        "--chunk_size",
        "8",
    ]
    killed_run(command, tmp_path, stop_after=2, cut=0)
    written, size = output.read_bytes(), source.stat().st_size
    resorted = sorted(rows, key=lambda row: row["title"])
    write_input(source, resorted)  # the same rows in another order: the same name and size
    assert source.stat().st_size == size and resorted != rows
    assert main(command) == 1  # before: 16 ids twice, 16 missing
    err = capsys.readouterr().err
    assert f"{output} was written with other settings (input_sha256 (the input file's content) " in err
    assert output.read_bytes() == written
    assert main([*command, "--overwrite"]) == 0
    assert [line["paper_id"] for line in read_jsonl(output)] == [row["paper_id"] for row in resorted]


# ------------------------------------------------------------------------------------------------ shards


@pytest.mark.parametrize("output_format", ["jsonl", "parquet"])
def test_shards_merge_into_the_output_of_one_run(output_format, saved_model_dir, tmp_path, capsys):
    rows = paper_rows()
    source = write_input(tmp_path / "papers.jsonl", rows)
    common = [
        "predict",
        "--model",
        str(saved_model_dir),
        "--input_file",
        str(source),
        "--id_column",
        "paper_id",
        "--output_format",
        output_format,
        "--chunk_size",
        "5",
    ]
    single = tmp_path / "single"
    assert main([*common, "--output_file", str(single)]) == 0
    shards = [tmp_path / f"shard{i}" for i in range(3)]
    for index in (2, 0, 1):
        assert (
            main([*common, "--output_file", str(shards[index]), "--num_shards", "3", "--shard_index", str(index)]) == 0
        )
    merged = tmp_path / "merged"
    assert (
        main(["merge-predictions", str(shards[1]), str(shards[0]), "--output_file", str(merged), "--chunk_size", "5"])
        == 1
    )  # not the whole input: shard 2 is missing
    assert "do not make a whole" in capsys.readouterr().err
    assert main(["merge-predictions", *map(str, shards), "--output_file", str(merged), "--chunk_size", "5"]) == 0

    def results(path):
        if output_format == "jsonl":
            return read_jsonl(path)
        assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in single.iterdir())
        return pa.concat_tables(pq.read_table(part) for part in sorted(path.glob("part-*.parquet"))).to_pylist()

    got = results(merged)
    assert [line["paper_id"] for line in got] == [row["paper_id"] for row in rows]
    assert_same_results(got, results(single))
    settings = "_bulk.json" if output_format == "parquet" else ".bulk.json"
    recorded = [
        json.loads(((p / settings) if output_format == "parquet" else p.with_name(p.name + settings)).read_text())
        for p in (merged, single)
    ]
    assert recorded[0] == recorded[1]
    assert main([*common, "--output_file", str(merged)]) == 0  # the merged output is a complete single-run output


def test_num_workers_give_the_output_of_one_process(saved_model_dir, tmp_path):
    rows = paper_rows()
    source = write_input(tmp_path / "papers.csv", rows)
    common = [
        "predict",
        "--model",
        str(saved_model_dir),
        "--input_file",
        str(source),
        "--id_column",
        "paper_id",
        "--chunk_size",
        "6",
    ]
    single, workers = tmp_path / "single.jsonl", tmp_path / "workers.jsonl"
    assert main([*common, "--output_file", str(single)]) == 0
    assert main([*common, "--output_file", str(workers), "--num_workers", "2"]) == 0
    assert not (tmp_path / "workers.jsonl.workers").exists()
    got = read_jsonl(workers)
    assert [line["paper_id"] for line in got] == [row["paper_id"] for row in rows]
    assert_same_results(got, read_jsonl(single))


# ------------------------------------------------------------------------------------------------ Ray Data


def test_ray_data_gives_the_single_process_results(wide_model_dir, tmp_path):
    ray = pytest.importorskip("ray")
    from hf_hybrid.bulk import classify_with_ray

    rows = paper_rows()
    source = write_input(tmp_path / "papers.parquet", rows)
    single = tmp_path / "single.jsonl"
    assert (
        main(
            [
                "predict",
                "--model",
                str(wide_model_dir),
                "--input_file",
                str(source),
                "--output_file",
                str(single),
                "--id_column",
                "paper_id",
                "--top_k",
                "2",
            ]
        )
        == 0
    )
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        classify_with_ray(
            str(source),
            str(tmp_path / "ray_out"),
            str(wide_model_dir),
            concurrency=1,
            chunk_size=9,
            id_column="paper_id",
            top_k=2,
        )
        got = pa.concat_tables(pq.read_table(part) for part in sorted((tmp_path / "ray_out").glob("*.parquet")))
        # The command's flag runs the same stage (on the Ray instance already started here).
        flags = ["--id_column", "paper_id", "--top_k", "2", "--chunk_size", "9", "--output_format", "jsonl"]
        command = ["predict", "--model", str(wide_model_dir), "--input_file", str(source)]
        assert main([*command, "--output_file", str(tmp_path / "ray_cli"), "--ray_address", "local", *flags]) == 0
        from_cli = [line for part in sorted((tmp_path / "ray_cli").glob("*.json*")) for line in read_jsonl(part)]
    finally:
        ray.shutdown()
    expected = read_jsonl(single)
    for results in (got.to_pylist(), from_cli):
        by_id = {line["paper_id"]: line for line in results}
        assert sorted(by_id) == [row["paper_id"] for row in rows] and len(results) == len(rows)  # each row once
        assert_same_results([by_id[line["paper_id"]] for line in expected], expected)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num_workers", "2"], "--ray_address splits the work itself"),
        (["--overwrite"], "writes a new folder"),
        (["--output_file", "EXISTING"], "exists: Ray Data writes its parts into a new folder"),
    ],
)
def test_a_ray_run_refuses_what_ray_cannot_do_before_the_model_loads(flags, message, tmp_path, capsys):
    source = write_input(tmp_path / "papers.csv", paper_rows())
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "part-0.json").write_text("{}\n")
    flags = [str(existing) if flag == "EXISTING" else flag for flag in flags]
    output = [] if "--output_file" in flags else ["--output_file", str(tmp_path / "out")]
    argv = ["predict", "--model", str(tmp_path / "no-model"), "--input_file", str(source), *output, *flags]
    assert main([*argv, "--ray_address", "local"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# Ids as arXiv writes them, which a reader that guesses types turns into numbers (0704.0010 -> 704.001), and old-style
# ones with a slash, which pandas writes escaped (cs\/0701001).
ARXIV_IDS = ["0704.0010", "0704.0100", "cs/0701001", "1501.00001v2", "0001.0001"]


def test_ray_keeps_ids_byte_for_byte_and_names_a_file_it_cannot_read(saved_model_dir, tmp_path, capsys):
    ray = pytest.importorskip("ray")
    from hf_hybrid.bulk import classify_with_ray

    rows = [{**row, "paper_id": ARXIV_IDS[i % len(ARXIV_IDS)] + f"{i:03d}"} for i, row in enumerate(paper_rows(2))]
    numbered = [{**row, "paper_id": None if i == 3 else i} for i, row in enumerate(rows)]  # int ids, one missing
    sources = [write_input(tmp_path / "papers.csv", rows), write_input(tmp_path / "numbered.jsonl", numbered)]
    bad = tmp_path / "bad.csv"
    bad.write_text(sources[0].read_text() + '"p9","a title","an abstract","one cell too many"\n')
    common = ["--id_column", "paper_id", "--chunk_size", "7", "--output_format", "jsonl"]

    def ids(lines):  # each line's id as written, byte for byte
        return [line[: line.index(', "label"')] for line in lines]

    singles = {}
    for source in sources:
        singles[source] = tmp_path / f"{source.stem}-single.jsonl"
        argv = ["predict", "--model", str(saved_model_dir), "--input_file", str(source)]
        assert main([*argv, "--output_file", str(singles[source]), *common]) == 0
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        for source in sources:
            folder = tmp_path / f"{source.stem}-ray"
            argv = ["predict", "--model", str(saved_model_dir), "--input_file", str(source)]
            assert main([*argv, "--output_file", str(folder), "--ray_address", "local", *common]) == 0
            got = [line for part in sorted(folder.glob("*.json")) for line in part.read_text().splitlines()]
            expected = singles[source].read_text().splitlines()
            assert ids(got) == ids(expected)  # before: {"paper_id": 704.001, ... and cs\/0701001
            assert_same_results([json.loads(line) for line in got], [json.loads(line) for line in expected])
        with pytest.raises(DataError) as refused:  # before: Ray's traceback
            classify_with_ray(str(bad), str(tmp_path / "bad-ray"), str(saved_model_dir), id_column="paper_id")
    finally:
        ray.shutdown()
    assert str(refused.value).startswith(f"{bad}: cannot be read as CSV (CSV parse error: ")
    assert "Expected 3 columns, got 4" in str(refused.value)


def test_settings_given_as_numpy_scalars_are_kept_as_python_numbers(saved_model_dir, tmp_path):
    import numpy as np

    from hf_hybrid.bulk import BulkSettings, classify_file
    from hf_hybrid.loading import load_trained

    source = write_input(tmp_path / "papers.jsonl", paper_rows(2))
    values = dict(input_file=str(source), model=str(saved_model_dir), revision=None, title_column="title")
    values.update(abstract_column="abstract", id_column=None, top_words=3, fold=None, output_format="jsonl")
    values.update(num_shards=1, shard_index=0)
    tokenizer, model = load_trained(str(saved_model_dir))
    outputs = []
    for top_k, threshold in ((2, 0.5), (np.int64(2), np.float32(0.5))):
        outputs.append(tmp_path / f"out-{type(top_k).__name__}.jsonl")
        classify_file(model, tokenizer, BulkSettings(**values, top_k=top_k, threshold=threshold), str(outputs[-1]))
    assert outputs[0].read_bytes() == outputs[1].read_bytes()  # before: the settings file could not be written
    recorded = json.loads(outputs[1].with_name(outputs[1].name + ".bulk.json").read_text())
    assert (recorded["top_k"], recorded["threshold"]) == (2, 0.5)
