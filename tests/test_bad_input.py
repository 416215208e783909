"""What a tired user or a malicious file does to hf-hybrid: each case gets the correct result, or a one-line error
(exit status 1, no traceback) that names what is wrong, and never a silently wrong or damaged model."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from papers import write_papers_csv
from safetensors.torch import load_file, save_file
from transformers import pipeline

from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
from hf_hybrid.cli import main
from hf_hybrid.output_folder import staging_dir

TINY_FLAGS = [
    "--embed_dim",
    "8",
    "--num_filters",
    "4",
    "--lstm_hidden",
    "4",
    "--lstm_layers",
    "1",
    "--classifier_hidden_sizes",
    "8",
    "--vocab_size",
    "300",
    "--min_frequency",
    "1",
    "--wide_bigram_buckets",
    "256",
    "--per_device_train_batch_size",
    "16",
    "--learning_rate",
    "0.01",
    "--seed",
    "0",
    "--disable_tqdm",
    "true",
    "--dataloader_pin_memory",
    "false",
]
PAPER = {"title": "Segmentation of video scenes", "abstract": "We detect pixels in camera images with depth."}


def refused(capsys, argv: list[str]) -> str:
    """Runs the CLI in this process and returns its error line, after checking that there is exactly one,
    with exit status 1 and no traceback."""
    status = main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hf-hybrid ")]
    assert status == 1 and "Traceback" not in err and len(lines) == 1, f"exit {status}:\n{err[-3000:]}"
    return lines[0]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def papers_csv(tmp_path_factory) -> Path:
    return write_papers_csv(tmp_path_factory.mktemp("papers") / "papers.csv", n_per_class=20, seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, papers_csv) -> Path:
    """A tiny model trained by `hf-hybrid train`. Do not modify: copy it."""
    folder = tmp_path_factory.mktemp("trained") / "model"
    assert (
        main(
            [
                "train",
                "--train_file",
                str(papers_csv),
                "--output_dir",
                str(folder),
                "--num_train_epochs",
                "2",
                *TINY_FLAGS,
            ]
        )
        == 0
    )
    return folder


@pytest.fixture
def trained_copy(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "model"))


# ------------------------------------------------------------------------------------------------------------
# A broken or inconsistent model folder: refused by the CLI and by the shipped code (Auto* classes, pipeline)
# ------------------------------------------------------------------------------------------------------------


def _edit_config(**changes):
    def edit(folder):
        config = json.loads((folder / "config.json").read_text())
        config.update(changes)
        (folder / "config.json").write_text(json.dumps(config))

    return edit


def _truncate_weights(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _drop_tensor(folder):
    tensors = load_file(folder / "model.safetensors")
    del tensors["hybrid.fusion.title_score.bias"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _tokenizer_of_another_model(folder):
    other = HybridCNNLSTMTokenizer.train_from_iterator(["only three words", "words words"], min_frequency=1)
    (folder / "tokenizer.json").write_text(other.backend_tokenizer.to_str())


BROKEN_FOLDERS = {
    # name: (what is done to the folder, what the one-line error must say)
    "no tokenizer.json": (lambda f: (f / "tokenizer.json").unlink(), ["has no tokenizer.json"]),
    "no config.json": (lambda f: (f / "config.json").unlink(), ["config.json"]),
    "config.json not JSON": (lambda f: (f / "config.json").write_text("{'vocab_size': 10"), ["config.json"]),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), ["model.safetensors"]),
    "truncated weights": (_truncate_weights, ["model.safetensors is truncated or corrupt", "download it again"]),
    "a tensor missing": (_drop_tensor, ["hybrid.fusion.title_score.bias missing"]),
    "kernel_sizes differ": (
        _edit_config(kernel_sizes=[3, 4]),
        ["hybrid.abstract_encoder.convs.2.bias unexpected", "check kernel_sizes"],
    ),
    # Only extra weights, no shape mismatch: `transformers` alone would load this and drop the second layer.
    "lstm_layers differ": (
        _edit_config(lstm_layers=2, dropout=0.0),
        ["title_encoder.lstm.backward_layers.1.bias_hh_l0 missing", "lstm_layers"],
    ),
    "embed_dim differs": (_edit_config(embed_dim=10), ["(4, 8, 3) in the file, (4, 10, 3) by the config", "embed_dim"]),
    "dropout is a string": (_edit_config(dropout="0.5"), ["`dropout` must be in [0, 1), got '0.5'"]),
    "kernel_sizes is a string": (_edit_config(kernel_sizes="3,4,5"), ["`kernel_sizes` must be a list of integers"]),
    "tokenizer of another model": (
        _tokenizer_of_another_model,
        ["the tokenizer has 5 words but the model's embedding"],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_FOLDERS))
def test_a_broken_model_folder_is_refused_in_one_line_by_the_cli_and_the_shipped_code(case, trained_copy, capsys):
    damage, expected = BROKEN_FOLDERS[case]
    damage(trained_copy)
    line = refused(capsys, ["predict", "--model", trained_copy, "--title", PAPER["title"], "--abstract", "x"])
    assert line.startswith("hf-hybrid predict: error: ")
    for text in expected:
        assert text in line

    # Auto* / pipeline users, through the code shipped in the folder: an error that says the same (transformers
    # words a missing config.json itself: without it, the folder's code is unknown).
    with pytest.raises(Exception) as raised:
        pipeline("arxiv-classification", model=str(trained_copy), trust_remote_code=True)(PAPER)
    assert all(text in str(raised.value) for text in (["config.json"] if "config.json" in case else expected))


def test_the_bare_encoder_still_loads_from_a_classifier_folder(trained):
    """A checkpoint's head is not the encoder's: AutoModel gets the encoder weights and ignores the head."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(trained, trust_remote_code=True)
    classifier = HybridCNNLSTMForSequenceClassification.from_pretrained(trained)
    torch.testing.assert_close(encoder.embedding.weight, classifier.hybrid.embedding.weight)


def test_damaged_weights_give_one_line_and_no_traceback_from_the_installed_command(trained_copy):
    _truncate_weights(trained_copy)
    result = subprocess.run(
        [
            Path(sys.executable).parent / "hf-hybrid",
            "predict",
            "--model",
            trained_copy,
            "--title",
            "x",
            "--abstract",
            "y",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("hf-hybrid")]
    assert errors == [
        f"hf-hybrid predict: error: {trained_copy}: model.safetensors is truncated or corrupt "
        "(Error while deserializing header: incomplete metadata, file not fully covered): "
        "download it again or re-save the model"
    ]


def test_weights_that_do_not_fit_give_one_line_and_no_load_report_from_the_installed_command(trained_copy):
    _edit_config(kernel_sizes=[3, 4])(trained_copy)
    result = subprocess.run(
        [
            Path(sys.executable).parent / "hf-hybrid",
            "predict",
            "--model",
            trained_copy,
            "--title",
            "x",
            "--abstract",
            "y",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "LOAD REPORT" not in result.stderr and "Reinit" not in result.stderr  # it was refused, not re-initialised
    [error] = [line for line in result.stderr.splitlines() if line.startswith("hf-hybrid")]
    assert "hybrid.abstract_encoder.convs.2.bias unexpected" in error and "check kernel_sizes" in error


# ------------------------------------------------------------------------------------------------------------
# Training output: all or nothing
# ------------------------------------------------------------------------------------------------------------


def test_a_run_refused_after_learning_the_vocabulary_leaves_the_previous_model_intact(trained_copy, papers_csv, capsys):
    before = folder_bytes(trained_copy)
    # A smaller vocabulary than the model's: a tokenizer written now would make its weights read the wrong words.
    line = refused(
        capsys,
        [
            "train",
            "--train_file",
            papers_csv,
            "--output_dir",
            trained_copy,
            *TINY_FLAGS,
            "--vocab_size",
            "20",
            "--class_weights",
            "cs.XX=2",
        ],
    )
    assert "cs.XX" in line
    assert folder_bytes(trained_copy) == before


def test_a_run_that_fails_at_the_end_leaves_the_model_intact_and_resumes_from_its_checkpoint(
    trained_copy, papers_csv, capsys, caplog, monkeypatch, tmp_path
):
    import hf_hybrid.output_folder

    before = folder_bytes(trained_copy)
    args = [
        "train",
        "--train_file",
        papers_csv,
        "--output_dir",
        trained_copy,
        *TINY_FLAGS,
        "--num_train_epochs",
        "2",
        "--seed",
        "1",
    ]

    def broken_plot(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(hf_hybrid.output_folder, "plot_confusion_matrix", broken_plot)
    assert refused(capsys, args) == "hf-hybrid train: error: No space left on device"
    assert folder_bytes(trained_copy) == before
    staging = staging_dir(trained_copy)
    [checkpoint] = staging.glob("checkpoint-*")
    assert (
        f"the run did not finish (OSError): {trained_copy} is unchanged; its partial files are in {staging}; "
        f"resume with --resume_from_checkpoint {checkpoint}"
    ) in caplog.text

    monkeypatch.undo()
    # The same papers in another order would be split otherwise: the checkpoint would learn other papers, and
    # could be tested on papers it learned.
    lines = papers_csv.read_text().splitlines(keepends=True)
    resorted = tmp_path / "resorted.csv"
    resorted.write_text(lines[0] + "".join(sorted(lines[1:])))
    other = [resorted if arg == papers_csv else arg for arg in args]
    line = refused(capsys, [*other, "--resume_from_checkpoint", checkpoint])
    assert line.startswith(f"hf-hybrid train: error: --resume_from_checkpoint {checkpoint}: the run started on other ")
    assert line.endswith("resume with the same data files, --split_seed and --max_train_samples, or start again")
    assert main([str(arg) for arg in args] + ["--resume_from_checkpoint", str(checkpoint)]) == 0
    assert not staging.exists()
    after = folder_bytes(trained_copy)
    assert after.keys() == before.keys() and after["model.safetensors"] != before["model.safetensors"]
    assert json.loads(after["training_args.json"])["seed"] == 1


def test_an_output_dir_of_other_files_is_refused_before_anything_is_written(tmp_path, papers_csv, capsys):
    (tmp_path / "thesis.tex").write_text("years of work")
    line = refused(capsys, ["train", "--train_file", papers_csv, "--output_dir", tmp_path, *TINY_FLAGS])
    assert "holds files that are not an hf-hybrid model" in line
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"] and not staging_dir(tmp_path).exists()


# ------------------------------------------------------------------------------------------------------------
# Options outside their meaning: refused with the flag named, before anything is read or written
# ------------------------------------------------------------------------------------------------------------

BAD_TRAINING_OPTIONS = [
    (["--num_train_epochs", "0"], "--num_train_epochs must be greater than 0, got 0.0"),
    (["--num_train_epochs", "-2"], "--num_train_epochs must be greater than 0"),
    (["--num_train_epochs", "nan"], "--num_train_epochs must be greater than 0"),
    (["--max_steps", "0"], "--max_steps must be greater than 0"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be 2 or more"),
    # BatchNorm learns from the spread of a batch: one paper has none (a traceback before).
    (["--per_device_train_batch_size", "1"], "--per_device_train_batch_size must be 2 or more (BatchNorm"),
    (["--per_device_eval_batch_size", "-1"], "--per_device_eval_batch_size must be 1 or more"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be 1 or more"),
    (["--learning_rate", "0"], "--learning_rate must be greater than 0"),
    (["--weight_decay", "-0.1"], "--weight_decay must be 0 or more"),
    (["--max_grad_norm", "-1"], "--max_grad_norm must be 0 or more"),
    (["--early_stopping_patience", "0"], "--early_stopping_patience must be 1 or more"),
    (["--save_total_limit", "0"], "--save_total_limit must be 1 or more"),
    (["--seed", "-1"], "--seed must be 0 or more"),
    (
        ["--lr_scheduler_type", "reduce_lr_on_plateau", "--lr_scheduler_kwargs", '{"factor": 2}'],
        "the plateau factor must be between 0 and 1",
    ),
    (["--recipe", "notebook", "--lr_scheduler_kwargs", '{"factor": 0}'], "the plateau factor must be between 0 and 1"),
    (["--freeze_embedding_epochs", "-1"], "--freeze_embedding_epochs must be 0 or more"),
    (["--label_smoothing", "1"], "--label_smoothing must be at least 0 and below 1"),
    (["--wide_branch", "true", "--wide_bigram_buckets", "0"], "--wide_bigram_buckets must be greater than 0"),
    (["--wide_branch", "true", "--wide_learning_rate", "0"], "--wide_learning_rate must be greater than 0"),
    (["--split_seed", "-1"], "--split_seed must be 0 or more"),
    (["--vocab_size", "2"], "--vocab_size must be at least 3"),
    (["--min_frequency", "0"], "--min_frequency must be 1 or more"),
    (["--embed_dim", "0"], "--embed_dim must be greater than 0"),
    (["--kernel_sizes", "3", "0"], "--kernel_sizes must be one or more widths greater than 0"),
    (["--lstm_layers", "0"], "--lstm_layers must be greater than 0"),
    (["--dropout", "1.5"], "--dropout must be at least 0 and below 1"),
    (["--embedding_dropout", "-0.1"], "--embedding_dropout must be at least 0 and below 1"),
    (["--classifier_hidden_sizes", "16", "-4"], "--classifier_hidden_sizes must be a list of numbers greater than 0"),
    (["--max_title_length", "0"], "--max_title_length must be greater than 0"),
    (["--class_weights", "cs.AI=-1"], "--class_weights 'cs.AI=-1'"),
    (["--class_weights", "cs.AI=heavy"], "--class_weights 'cs.AI=heavy'"),
    (["--validation_size", "0"], "--validation_size must be between 0 and 1"),
    (["--test_size", "0.5", "--validation_size", "0.5"], "leave no training papers"),
    (["--max_train_samples", "0"], "--max_train_samples must be 2 or more"),
    (["--max_train_samples", "1"], "--max_train_samples must be 2 or more (BatchNorm"),
]


@pytest.mark.parametrize("flags, message", BAD_TRAINING_OPTIONS, ids=[" ".join(f) for f, _ in BAD_TRAINING_OPTIONS])
def test_a_training_option_outside_its_meaning_is_refused_before_anything_is_written(
    flags, message, papers_csv, tmp_path, capsys
):
    output_dir = tmp_path / "out"
    line = refused(capsys, ["train", "--train_file", papers_csv, "--output_dir", output_dir, *TINY_FLAGS, *flags])
    assert line.startswith("hf-hybrid train: error: ") and message in line
    assert not output_dir.exists() and not staging_dir(output_dir).exists()


def test_finetuning_refuses_bad_options_too(trained, papers_csv, tmp_path, capsys):
    line = refused(
        capsys,
        [
            "finetune",
            "--model",
            trained,
            "--train_file",
            papers_csv,
            "--output_dir",
            tmp_path / "out",
            "--num_train_epochs",
            "0",
        ],
    )
    assert line == "hf-hybrid finetune: error: --num_train_epochs must be greater than 0, got 0.0"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--top_words", "-1"], "--top_words must be 0 or more, got -1"),
        (["--batch_size", "0"], "--batch_size must be 1 or more, got 0"),
    ],
)
def test_predict_refuses_negative_counts(flags, message, trained, capsys):
    line = refused(capsys, ["predict", "--model", trained, "--title", "x", "--abstract", "y", *flags])
    assert line == f"hf-hybrid predict: error: {message}"


def test_the_pipeline_refuses_a_negative_top_words(trained):
    classify = pipeline("arxiv-classification", model=str(trained), trust_remote_code=True)
    with pytest.raises(ValueError, match="`top_words` must be a whole number of words, 0 or more, got -1"):
        classify(PAPER, top_words=-1)
    assert classify(PAPER, top_words=0)["title_words"] == []


# ------------------------------------------------------------------------------------------------------------
# Data hygiene
# ------------------------------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    import csv
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(text.getvalue().encode(encoding))
    return path


def test_literal_missing_value_words_stay_text(tmp_path):
    from hf_hybrid.tables import prepare_table, read_table

    words = ["NA", "null", "None", "N/A", "nan", "NaN", "#N/A", "NULL"]
    rows = [{"title": word, "abstract": word, "category": "cs.AI"} for word in words]
    table = prepare_table(read_table(str(_write_csv(tmp_path / "papers.csv", rows))), "title", "abstract", "category")
    assert table["title"] == words and table["abstract"] == words


def test_predicting_a_file_keeps_a_title_that_reads_none(trained, tmp_path, capsys):
    papers = _write_csv(tmp_path / "papers.csv", [{"title": "None", "abstract": "nan"}])
    assert main(["predict", "--model", str(trained), "--input_file", str(papers)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [w["word"] for w in result["title_words"]] == ["none"]
    assert [w["word"] for w in result["abstract_words"]] == ["nan"]


def test_duplicates_are_removed_before_splitting_and_reported(tmp_path, capsys, caplog):
    from papers import make_papers

    from hf_hybrid.data import load_papers
    from hf_hybrid.training_args import DataArguments

    papers = make_papers(n_per_class=20, seed=3)
    # The same papers again as a tired user's merge would give them: other case, punctuation and spacing.
    copies = [
        {
            "title": p["title"].upper() + "!",
            "abstract": "  " + p["abstract"].replace(" ", "  "),
            "category": p["category"],
        }
        for p in papers[:12]
    ]
    copies[0]["category"] = next(c for c in ("cs.AI", "cs.CL") if c != papers[0]["category"])
    mixed_case = [{**p, "category": " " + p["category"].upper() + " "} for p in make_papers(n_per_class=2, seed=4)]
    near_empty = [{"title": "Graphs", "abstract": "", "category": "cs.AI"}]
    path = _write_csv(tmp_path / "papers.csv", papers + copies + mixed_case + near_empty)

    splits = load_papers(DataArguments(train_file=str(path)), seed=0)
    assert splits["train"].features["labels"].names == ["cs.AI", "cs.CL", "cs.CV"]
    assert splits.cleaning == {
        "duplicates_removed": 12,
        "duplicates_with_another_label": 1,
        "also_in_validation_or_test_file": 0,
        "near_empty_papers": 1,
        "labels_merged_by_case": {"CS.AI": "cs.AI", "CS.CL": "cs.CL", "CS.CV": "cs.CV"},
    }
    seen = {}
    for name, split in splits.items():
        for title, abstract in zip(split["title"], split["abstract"]):
            key = (" ".join(title.lower().strip("!").split()), " ".join(abstract.split()))
            assert key not in seen, f"a paper is in both {seen.get(key)} and {name}"
            seen[key] = name
    assert "removed 12 duplicate paper(s) (1 of them labelled differently)" in caplog.text

    output_dir = tmp_path / "out"
    assert (
        main(
            [
                "train",
                "--train_file",
                str(path),
                "--output_dir",
                str(output_dir),
                "--num_train_epochs",
                "1",
                *TINY_FLAGS,
            ]
        )
        == 0
    )
    assert json.loads((output_dir / "eval_results.json").read_text())["data_cleaning"] == splits.cleaning


def test_training_papers_that_are_also_in_the_test_file_are_removed(tmp_path):
    from papers import make_papers

    from hf_hybrid.data import load_papers
    from hf_hybrid.training_args import DataArguments

    papers = make_papers(n_per_class=20, seed=5)
    train = _write_csv(tmp_path / "train.csv", papers)
    test = _write_csv(tmp_path / "test.csv", papers[:6])
    splits = load_papers(DataArguments(train_file=str(train), test_file=str(test)), seed=0)
    assert splits.cleaning["also_in_validation_or_test_file"] == 6
    assert len(splits["train"]) + len(splits["validation"]) == len(papers) - 6


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "latin1.csv",
            "title,abstract,category\nSchrödinger,é,cs.AI\n".encode("latin-1"),
            "is not UTF-8 text (it holds byte 0xf6): save it as UTF-8",
        ),
        ("utf16.csv", "title,abstract,category\nNets,deep,cs.AI\n".encode("utf-16"), "is not UTF-8 text"),
        (
            "lists.jsonl",
            b'{"title": ["deep", "nets"], "abstract": "x", "category": "cs.AI"}\n',
            "column(s) title (List(Value('string'))) should hold text",
        ),
        ("objects.jsonl", b'{"title": "t", "abstract": {"text": "x"}, "category": "cs.AI"}\n', "column(s) abstract"),
        ("labels.jsonl", b'{"title": "t", "abstract": "x", "category": ["cs.AI", "cs.CL"]}\n', "column(s) category"),
    ],
)
def test_files_that_are_not_utf8_text_or_hold_the_wrong_json_types_are_refused(
    name, content, message, tmp_path, capsys
):
    path = tmp_path / name
    path.write_bytes(content)
    line = refused(capsys, ["train", "--train_file", path, "--output_dir", tmp_path / "out"])
    assert message in line


def test_numbers_in_a_text_column_are_read_as_text(tmp_path):
    from hf_hybrid.tables import prepare_table, read_table

    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"title": "Deep nets", "abstract": "x", "category": "cs.AI"}\n'
        '{"title": 1984, "abstract": "y", "category": "cs.CL"}\n'
    )
    assert prepare_table(read_table(str(path)), "title", "abstract", "category")["title"] == ["Deep nets", "1984"]


def test_a_huge_abstract_gives_the_result_of_its_first_words(trained):
    classify = pipeline("arxiv-classification", model=str(trained), trust_remote_code=True)
    head = "planning agents reasoning over images " * 40
    huge = classify({"title": PAPER["title"], "abstract": head + "pixels " * 1_000_000})
    cut = classify({"title": PAPER["title"], "abstract": head})
    assert huge == cut


def test_concurrent_predictions_on_one_pipeline_equal_serial_ones(trained):
    from concurrent.futures import ThreadPoolExecutor

    from papers import make_papers

    classify = pipeline("arxiv-classification", model=str(trained), trust_remote_code=True)
    papers = [{"title": p["title"], "abstract": p["abstract"]} for p in make_papers(n_per_class=8, seed=6)]
    serial = [classify(paper, top_words=3) for paper in papers]
    with ThreadPoolExecutor(max_workers=6) as pool:
        threaded = list(pool.map(lambda paper: classify(paper, top_words=3), papers * 3))
    assert threaded == serial * 3
    chunks = [papers[:8], papers[8:16], papers[16:]] * 2
    with ThreadPoolExecutor(max_workers=3) as pool:
        batches = list(pool.map(lambda chunk: classify(chunk, batch_size=4), chunks))
    assert batches == [classify(chunk, batch_size=4) for chunk in chunks]


# ------------------------------------------------------------------------------------------------------------
# The push: only what hf-hybrid wrote, from the folder itself
# ------------------------------------------------------------------------------------------------------------


def test_the_push_sends_only_hf_hybrid_files_of_the_folder_itself(trained_copy, tmp_path, caplog):
    import logging

    from hf_hybrid.hub import _operations

    written = sorted(p.name for p in trained_copy.iterdir())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secrets.json").write_text('{"token": "hf_secret"}')
    (trained_copy / "eval_results.json").unlink()
    (trained_copy / "eval_results.json").symlink_to(outside / "secrets.json")
    (trained_copy / "attention.png").rename(trained_copy / "real_attention.png")
    (trained_copy / "attention.png").symlink_to("real_attention.png")  # a link that stays in the folder is fine
    (trained_copy / "drafts").mkdir()
    (trained_copy / "drafts" / "config.json").write_text("{}")
    (trained_copy / ".env").write_text("HF_TOKEN=hf_secret")
    (trained_copy / "my_notes.txt").write_text("private")
    (trained_copy / "helper.py").write_text("import os")

    with caplog.at_level(logging.INFO, logger="hf_hybrid.hub"):
        operations = {op.path_in_repo: op.path_or_fileobj for op in _operations(trained_copy, "someone/model")}
    assert sorted(operations) == [name for name in written if name != "eval_results.json"]
    assert b"hf_secret" not in b"".join(Path(f).read_bytes() for f in operations.values() if isinstance(f, str))
    assert (
        "not pushed (not written by hf-hybrid, or a link out of the folder): .env, drafts/, eval_results.json, "
        "helper.py, my_notes.txt, real_attention.png"
    ) in caplog.text


def saved_checkpoint(staging: Path) -> Path | None:
    """A checkpoint of `staging` whose trainer state (which the Trainer writes last) is whole JSON, if any."""
    for state in staging.glob("checkpoint-*/trainer_state.json"):
        try:
            json.loads(state.read_text())
        except (OSError, ValueError):  # being written, or rotated away meanwhile
            continue
        return state.parent
    return None


def test_an_interrupted_run_leaves_the_model_intact_and_resumes(trained_copy, papers_csv, tmp_path):
    import signal
    import time

    before = folder_bytes(trained_copy)
    staging = staging_dir(trained_copy)
    # So many epochs, and a patience as long, that the run cannot end before the interrupt, which is sent on a
    # signal of the run itself: its first checkpoint saved whole.
    argv = [
        Path(sys.executable).parent / "hf-hybrid",
        "train",
        "--train_file",
        papers_csv,
        "--output_dir",
        trained_copy,
        *TINY_FLAGS,
        "--num_train_epochs",
        "100000",
        "--early_stopping_patience",
        "100000",
    ]
    log = tmp_path / "stderr.txt"  # a file, not a pipe: a pipe that is not read would block the run once full
    with log.open("w") as stderr:
        # A job started in the background inherits SIGINT ignored, and Python then keeps ignoring it: the run gets
        # the default disposition back, so that it turns SIGINT into KeyboardInterrupt as in a terminal.
        process = subprocess.Popen(
            [str(arg) for arg in argv],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            while saved_checkpoint(staging) is None:
                assert process.poll() is None, f"the run ended before its first checkpoint:\n{log.read_text()[-3000:]}"
                time.sleep(0.1)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    stderr = log.read_text()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    advice = re.search(
        re.escape(f"{trained_copy} is unchanged; its partial files are in {staging}; ")
        + r"resume with --resume_from_checkpoint (\S+)",
        stderr,
    )
    assert advice, stderr[-3000:]
    assert stderr.rstrip().endswith("hf-hybrid train: interrupted")
    assert folder_bytes(trained_copy) == before

    checkpoint = Path(advice[1])
    resumed = subprocess.run(
        [str(arg) for arg in argv[:-4]]
        + [
            "--num_train_epochs",
            str(json.loads((checkpoint / "trainer_state.json").read_text())["epoch"] + 1),
            "--resume_from_checkpoint",
            str(checkpoint),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not staging.exists() and folder_bytes(trained_copy).keys() == before.keys()


# ------------------------------------------------------------------------------------------------------------
# Word-vector files: one that gives no vector is refused; a gzipped one is read
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("8 8\n", "is empty"),
        (
            "zzzqx " + " ".join(["0.1"] * 8) + "\nqqqzz " + " ".join(["0.2"] * 8) + "\n",
            "none of them of a vocabulary word",
        ),
    ],
    ids=["empty", "header only", "no vocabulary word"],
)
def test_a_vectors_file_that_gives_no_vector_is_refused_before_training(content, message, papers_csv, tmp_path, capsys):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text(content)
    output_dir = tmp_path / "out"
    line = refused(
        capsys,
        ["train", "--train_file", papers_csv, "--output_dir", output_dir, *TINY_FLAGS, "--init_embeddings", vectors],
    )
    assert line.startswith(f"hf-hybrid train: error: {vectors}: ") and message in line
    assert "--init_embeddings word2vec" in line
    assert not output_dir.exists() and not staging_dir(output_dir).exists()


@pytest.mark.parametrize("name", ["vectors.txt.gz", "vectors.txt"])
def test_a_gzipped_vectors_file_is_read_as_the_text_it_holds(name, tmp_path):
    import gzip

    import numpy as np

    from hf_hybrid.word_vectors import read_word_vectors

    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(["deep networks for images"], min_frequency=1)
    text = "deep " + " ".join(["0.5"] * 4) + "\nimages " + " ".join(["-1"] * 4) + "\n"
    (tmp_path / name).write_bytes(gzip.compress(text.encode()))  # the second: gzipped, but not named so
    vectors = read_word_vectors(tmp_path / name, tokenizer, dimension=4)
    vocab = tokenizer.get_vocab()
    assert sorted(vectors.ids.tolist()) == sorted([vocab["deep"], vocab["images"]])
    np.testing.assert_array_equal(vectors.vectors[list(vectors.ids).index(vocab["deep"])], [0.5] * 4)


# ------------------------------------------------------------------------------------------------------------
# Resume: a checkpoint the flags do not fit is refused before the vocabulary and word vectors are learned
# ------------------------------------------------------------------------------------------------------------


def test_resuming_with_other_model_sizes_is_refused_before_any_work(trained, papers_csv, tmp_path, capsys, caplog):
    import logging

    checkpoint = Path(shutil.copytree(trained, tmp_path / "model.partial" / "checkpoint-6"))
    with caplog.at_level(logging.INFO, logger="hf_hybrid"):
        line = refused(
            capsys,
            [
                "train",
                "--train_file",
                papers_csv,
                "--output_dir",
                tmp_path / "model",
                *TINY_FLAGS,
                "--embed_dim",
                "16",
                "--lstm_hidden",
                "6",
                "--resume_from_checkpoint",
                checkpoint,
            ],
        )
    assert line.startswith(f"hf-hybrid train: error: --resume_from_checkpoint {checkpoint}: ")
    assert "--embed_dim 16 (the checkpoint's: 8)" in line and "--lstm_hidden 6 (the checkpoint's: 4)" in line
    assert "vocabulary" not in caplog.text and "word2vec" not in caplog.text  # refused before that work


def test_resuming_from_a_folder_that_is_no_checkpoint_is_refused(papers_csv, tmp_path, capsys):
    line = refused(
        capsys,
        [
            "train",
            "--train_file",
            papers_csv,
            "--output_dir",
            tmp_path / "model",
            *TINY_FLAGS,
            "--resume_from_checkpoint",
            tmp_path / "nowhere",
        ],
    )
    assert line == (
        f"hf-hybrid train: error: --resume_from_checkpoint {tmp_path / 'nowhere'}: no checkpoint there "
        "(no config.json): give a checkpoint-* folder of the run's <output_dir>.partial"
    )


def test_data_that_leaves_one_training_paper_is_refused_before_training(tmp_path, capsys):
    from papers import make_papers

    papers = make_papers(n_per_class=4, seed=7)
    relabelled = {**papers[0], "category": next(c for c in ("cs.AI", "cs.CL") if c != papers[0]["category"])}
    train = write_papers_csv(tmp_path / "train.csv", [papers[0], relabelled])  # one paper once deduplicated
    others = [p for p in papers[1:] if p["category"] in (papers[0]["category"], relabelled["category"])]
    validation = write_papers_csv(tmp_path / "validation.csv", others[::2])
    test = write_papers_csv(tmp_path / "test.csv", others[1::2])
    output_dir = tmp_path / "out"
    line = refused(
        capsys,
        [
            "train",
            "--train_file",
            train,
            "--validation_file",
            validation,
            "--test_file",
            test,
            "--output_dir",
            output_dir,
            *TINY_FLAGS,
        ],
    )
    assert line.startswith(f"hf-hybrid train: error: {train}: 1 training paper") and "at least 2" in line
    assert not output_dir.exists() and not staging_dir(output_dir).exists()


# ------------------------------------------------------------------------------------------------------------
# The Space writer: never over a user's own files, never for a repo the Space cannot load
# ------------------------------------------------------------------------------------------------------------


def test_a_space_is_not_written_over_the_users_own_files(tmp_path, capsys, monkeypatch):
    import hf_hybrid.commands.demo
    import hf_hybrid.hub

    space = tmp_path / "my-space"
    space.mkdir()
    (space / "README.md").write_text("# My own space\n")
    (space / "app.py").write_text("print('my app')\n")
    before = folder_bytes(space)
    line = refused(capsys, ["demo", "--model", "someone/model", "--write_space", space])
    assert line == (
        f"hf-hybrid demo: error: {space} holds files a Space would overwrite (README.md, app.py): "
        "give a new or empty folder, or --overwrite to replace them"
    )
    assert folder_bytes(space) == before

    # With --overwrite the Space is written (the Hub answered here by stand-ins).
    monkeypatch.setattr(hf_hybrid.hub, "pinned_commit", lambda repo, revision=None: "0" * 40)
    monkeypatch.setattr(hf_hybrid.hub, "repo_files", lambda repo, revision: REPO_FILES)
    monkeypatch.setattr(hf_hybrid.commands.demo, "space_labels", lambda repo, revision: ["cs.AI", "cs.CL"])
    assert main(["demo", "--model", "someone/model", "--write_space", str(space), "--overwrite"]) == 0
    assert 'MODEL_ID = "someone/model"' in (space / "app.py").read_text()


REPO_FILES = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "configuration_hybrid_cnn_lstm.py",
    "modeling_hybrid_cnn_lstm.py",
    "layers_hybrid_cnn_lstm.py",
    "loading_hybrid_cnn_lstm.py",
    "folding_hybrid_cnn_lstm.py",
    "tokenization_hybrid_cnn_lstm.py",
    "pipeline_arxiv_classification.py",
    "README.md",
]


@pytest.mark.parametrize(
    "missing",
    [
        ["tokenizer.json"],
        ["modeling_hybrid_cnn_lstm.py", "pipeline_arxiv_classification.py"],
        ["folding_hybrid_cnn_lstm.py"],
        ["model.safetensors"],
    ],
)
def test_no_space_is_written_for_a_repo_it_could_not_load(missing, tmp_path, capsys, monkeypatch):
    import hf_hybrid.commands.demo
    import hf_hybrid.hub

    monkeypatch.setattr(hf_hybrid.hub, "pinned_commit", lambda repo, revision=None: "0" * 40)
    monkeypatch.setattr(hf_hybrid.hub, "repo_files", lambda repo, revision: [f for f in REPO_FILES if f not in missing])
    monkeypatch.setattr(hf_hybrid.commands.demo, "space_labels", lambda repo, revision: ["cs.AI", "cs.CL"])
    line = refused(capsys, ["demo", "--model", "someone/model", "--write_space", tmp_path / "space"])
    assert line == (
        f"hf-hybrid demo: error: someone/model at commit {'0' * 40} has no {', '.join(missing)}, so a "
        "Space could not load it: push the complete model folder (hf-hybrid push) and try again"
    )
    assert not (tmp_path / "space").exists()


def test_a_truncated_gzipped_vectors_file_is_refused_as_damaged(tmp_path):
    import gzip

    from hf_hybrid.word_vectors import WordVectorError, read_word_vectors

    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(["deep networks for images"], min_frequency=1)
    whole = gzip.compress(("".join(f"deep{i} " + " ".join(["0.5"] * 4) + "\n" for i in range(2000))).encode())
    (tmp_path / "vectors.txt.gz").write_bytes(whole[: len(whole) // 2])  # an interrupted download
    with pytest.raises(WordVectorError, match=r"vectors.txt.gz: a damaged gzip file .*download it again"):
        read_word_vectors(tmp_path / "vectors.txt.gz", tokenizer, dimension=4)


@pytest.mark.parametrize("listing", ["cs.AI cs.CV", "cs.AI,cs.CV", "cs.AI, cs.CV", "['cs.AI', 'cs.CV']"])
def test_labels_listing_several_labels_are_refused_without_multi_label(listing, capsys, tmp_path):
    from papers import make_papers

    papers = make_papers(20)
    for paper in papers[:10]:
        paper["category"] = listing  # a cross-listed paper, read as one new class without --problem_type
    line = refused(
        capsys,
        [
            "train",
            "--train_file",
            write_papers_csv(tmp_path / "papers.csv", papers),
            "--output_dir",
            tmp_path / "out",
            *TINY_FLAGS,
        ],
    )
    spelled = listing if "[" not in listing else "cs.AI cs.CV"
    assert f"labels such as {spelled!r} list several of the other labels" in line
    assert "--problem_type multi_label_classification" in line and not (tmp_path / "out").exists()


def test_a_single_label_written_as_a_list_of_one_is_that_label(tmp_path):
    from papers import make_papers

    from hf_hybrid.data import load_papers
    from hf_hybrid.tables import label_names_of
    from hf_hybrid.training_args import DataArguments

    papers = make_papers(20)
    for paper in papers[::2]:
        paper["category"] = str([paper["category"]])  # as pandas writes a list of one
    splits = load_papers(DataArguments(train_file=str(write_papers_csv(tmp_path / "papers.csv", papers))), seed=0)
    assert label_names_of(splits["train"]) == ["cs.AI", "cs.CL", "cs.CV"]


def test_a_diverged_run_is_refused_before_calibration(capsys, papers_csv, tmp_path, monkeypatch):
    import hf_hybrid.trainer as trainer_module

    real_predict = trainer_module.HybridTrainer.predict

    def diverged(self, *args, **kwargs):
        result = real_predict(self, *args, **kwargs)
        for scores in result.predictions if isinstance(result.predictions, tuple) else [result.predictions]:
            scores[:] = float("nan")
        return result

    monkeypatch.setattr(trainer_module.HybridTrainer, "predict", diverged)
    line = refused(
        capsys,
        ["train", "--train_file", papers_csv, "--output_dir", tmp_path / "out", "--num_train_epochs", "1", *TINY_FLAGS],
    )
    assert "NaN or infinite scores on the validation split (training diverged)" in line
    assert "lower --learning_rate than 0.01" in line and not (tmp_path / "out").exists()


# ============================================================================================================
# Issue 21, item 3: the new surface (multi-label, calibration, bulk prediction), as a tired user and a malicious
# file would use it. Each case: a one-line error naming what is wrong and what to do, before any long work and
# before anything is written, or the correct result.
# ============================================================================================================

MULTI_LABEL_FLAGS = ["--label_column", "categories", "--problem_type", "multi_label_classification"]


def _multi_label_csv(path: Path, edit=None) -> Path:
    from papers import make_multi_label_papers, write_multi_label_csv

    papers = make_multi_label_papers(60)
    for paper in papers:
        if edit:
            edit(paper)
    return write_multi_label_csv(path, papers)


@pytest.mark.parametrize("flag", ["--threshold_tuning global", "--threshold-tuning=none"])
def test_a_multi_label_flag_on_a_single_label_run_is_refused(flag, papers_csv, tmp_path, capsys):
    line = refused(
        capsys, ["train", "--train_file", papers_csv, "--output_dir", tmp_path / "out", *TINY_FLAGS, *flag.split()]
    )
    assert line == (
        "hf-hybrid train: error: --threshold_tuning applies only to --problem_type multi_label_classification and "
        "this run is single-label: drop the flag"
    )
    assert not (tmp_path / "out").exists()


def test_a_multi_label_flag_on_finetuning_a_single_label_model_is_refused(trained, papers_csv, tmp_path, capsys):
    line = refused(
        capsys,
        [
            "finetune",
            "--model",
            trained,
            "--train_file",
            papers_csv,
            "--output_dir",
            tmp_path / "out",
            "--threshold_tuning",
            "per_label",
            "--disable_tqdm",
            "true",
        ],
    )
    assert f"--threshold_tuning applies only to --problem_type multi_label_classification and {trained} is a " in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_labels_naming_a_label_no_paper_has_are_refused(multi_label, papers_csv, tmp_path, capsys):
    data = _multi_label_csv(tmp_path / "multi.csv") if multi_label else papers_csv
    line = refused(
        capsys,
        [
            "train",
            "--train_file",
            data,
            "--output_dir",
            tmp_path / "out",
            *TINY_FLAGS,
            *(MULTI_LABEL_FLAGS if multi_label else []),
            "--labels",
            "cs.AI",
            "cs.CL",
            "cs.XX",
        ],
    )  # without the check: a run on cs.AI and cs.CL alone, the typo unnoticed
    assert line.startswith(f"hf-hybrid train: error: {data}: --labels cs.XX: no paper has it; the labels are ['cs.AI'")
    assert line.endswith("fix the names or drop them") and not (tmp_path / "out").exists()


def test_a_label_every_multi_label_paper_has_is_refused(tmp_path, capsys):
    def add_ai(paper):
        paper["categories"] = " ".join(sorted(set(paper["categories"].split()) | {"cs.AI"}))

    data = _multi_label_csv(tmp_path / "multi.csv", add_ai)
    # Its balanced weight (negatives over positives) would be 0: the label would silently learn nothing.
    line = refused(
        capsys, ["train", "--train_file", data, "--output_dir", tmp_path / "out", *TINY_FLAGS, *MULTI_LABEL_FLAGS]
    )
    assert line == (
        f"hf-hybrid train: error: {data}: every paper is labelled cs.AI, so the model cannot learn when not to give "
        "it: leave it out with --labels (the other labels), or add papers without it"
    )


def test_a_multi_label_file_evaluated_with_a_single_label_model_says_why(saved_model_dir, tmp_path, capsys):
    data = _multi_label_csv(tmp_path / "multi.csv")
    line = refused(
        capsys, ["evaluate", "--model", saved_model_dir, "--test_file", data, "--label_column", "categories"]
    )
    assert "are not among the model's ['cs.AI', 'cs.CL', 'cs.CV']: labels such as 'cs.AI cs.CL' list several " in line
    assert line.endswith("this is a single-label model (papers of several labels need a multi-label one)")


@pytest.mark.parametrize("temperature", [1e-300, 1e-9, 1e7])
def test_a_config_temperature_that_breaks_the_scores_is_refused_at_load(temperature, trained_copy, capsys):
    # 1e-300 is positive, but it is 0 in float32: every score would be NaN, the label that of index 0.
    _edit_config(calibration_temperature=temperature)(trained_copy)
    line = refused(capsys, ["predict", "--model", trained_copy, "--title", PAPER["title"], "--abstract", "x"])
    assert "`calibration_temperature` must be a positive number from 1e-06 to 1e+06 (1.0: uncalibrated)" in line
    with pytest.raises(ValueError, match="`calibration_temperature` must be a positive number from 1e-06"):
        pipeline("arxiv-classification", model=str(trained_copy), trust_remote_code=True)


def test_a_fitted_temperature_stays_one_a_config_loads():
    import numpy as np

    from hf_hybrid.calibration import fit_temperature
    from hf_hybrid.model.configuration_hybrid_cnn_lstm import MAX_TEMPERATURE

    # Papers all wrong: the fit ran to T = 1.05e7, which the saved config.json then refused to load.
    assert 1 < fit_temperature(np.array([[2.0, 0.0], [2.0, 0.0]]), np.array([1, 1])) < MAX_TEMPERATURE


def test_a_validation_split_the_model_gets_all_right_does_not_make_every_score_one():
    import numpy as np

    from hf_hybrid.calibration import fit_temperature

    # Two papers, both right: the likelihood alone is best at T -> 0 (the fit stopped at T = 0.01, every
    # probability 1.0); the prior keeps T near 1, where these two papers say little either way.
    temperature = fit_temperature(np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 1]))
    assert 0.5 < temperature < 1
    multi_label = fit_temperature(np.array([[3.0, -3.0], [-3.0, 3.0]]), np.array([[1, 0], [0, 1]]))
    assert 0.5 < multi_label < 1


# --- bulk prediction ----------------------------------------------------------------------------------------


def _bulk_rows(n: int = 8) -> list[dict]:
    from papers import make_papers

    return [{"id": f"p{i}", "title": p["title"], "abstract": p["abstract"]} for i, p in enumerate(make_papers(n))]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _parquet_bytes(rows) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.string()) for name in ("id", "title", "abstract")])
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    return buffer.getvalue()


def _bad_line(line: str):
    def write(path):
        lines = [json.dumps(row) for row in _bulk_rows()]
        lines[5] = line
        path.write_text("\n".join(lines) + "\n")

    return write


BAD_BULK_INPUTS = {
    # name: (file name, how it is written, what the one-line error says)
    "truncated parquet": (
        "papers.parquet",
        lambda p: p.write_bytes(_parquet_bytes(_bulk_rows())[:300]),
        "cannot be read as PARQUET (truncated or corrupt: Parquet magic bytes not found",
    ),
    "not parquet": ("papers.parquet", lambda p: p.write_text("title,abstract\n"), "cannot be read as PARQUET"),
    "a JSON Lines line cut short": (
        "papers.jsonl",
        _bad_line('{"id": "p5", "title": "cut'),
        "cannot be read as JSON (line 6 is not JSON: ",
    ),
    "a JSON Lines line that is a list": ("papers.jsonl", _bad_line("[1, 2]"), "(line 6 is not a JSON object)"),
    "a JSON Lines title that is a list": (
        "papers.jsonl",
        _bad_line('{"id": "p5", "title": ["a"], "abstract": "b"}'),
        "(line 6: title holds list, not text)",
    ),
    "a JSON Lines id of another type": (
        "papers.jsonl",
        _bad_line('{"id": 5, "title": "a", "abstract": "b"}'),
        "(line 6 has a number in id, the lines before it text)",
    ),
    "a CSV row of too many cells": (
        "papers.csv",
        lambda p: p.write_text('id,title,abstract\np1,a,b\np2,"c","d",extra\n'),
        "cannot be read as CSV (CSV parse error: Row #3: Expected 3 columns, got 4",
    ),
    "a CSV that is not UTF-8": (
        "papers.csv",
        lambda p: p.write_bytes(b"id,title,abstract\np1,caf\xe9,b\n"),
        "invalid UTF8 data",
    ),
    "a JSON array cut short": (
        "papers.json",
        lambda p: p.write_text('[{"id": "p1", "title": "a", "abstract": "b"}, {"id": "p2"'),
        "cannot be read as JSON (Expecting ',' delimiter",
    ),
    "an empty CSV": ("papers.csv", lambda p: p.write_text(""), "is empty (no header, no rows)"),
    "a header-only CSV": ("papers.csv", lambda p: p.write_text("id,title,abstract\n"), "has no rows"),
    "an empty JSON Lines file": ("papers.jsonl", lambda p: p.write_text("\n"), "has no rows"),
    "a Parquet file of no rows": ("papers.parquet", lambda p: p.write_bytes(_parquet_bytes([])), "has no rows"),
}


@pytest.mark.parametrize("case", list(BAD_BULK_INPUTS))
def test_an_input_file_that_cannot_be_read_is_refused_before_anything_is_written(
    case, saved_model_dir, tmp_path, capsys
):
    name, write, message = BAD_BULK_INPUTS[case]
    source = tmp_path / name
    write(source)
    output = tmp_path / "out.jsonl"
    line = refused(
        capsys,
        ["predict", "--model", saved_model_dir, "--input_file", source, "--id_column", "id", "--output_file", output],
    )
    assert line.startswith(f"hf-hybrid predict: error: {source}: ") and message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no output, no settings file left behind


def test_an_output_file_that_is_the_input_is_refused_and_the_input_kept(saved_model_dir, tmp_path, capsys):
    source = _write_jsonl(tmp_path / "papers.jsonl", _bulk_rows())
    before = source.read_bytes()
    for output in (source, tmp_path / "sub" / ".." / "papers.jsonl"):
        line = refused(
            capsys,
            ["predict", "--model", saved_model_dir, "--input_file", source, "--output_file", output, "--overwrite"],
        )  # --overwrite deleted the input before
        assert line == (
            f"hf-hybrid predict: error: --output_file {output} would replace the input file {source}: "
            "choose another --output_file"
        )
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    "name, flags, message",
    [
        (
            "out.parquet",
            [],
            "--output_format jsonl writes JSON Lines, not .parquet: name it .jsonl, or give --output_format parquet",
        ),
        ("out.csv", [], "--output_format jsonl writes JSON Lines, not .csv"),
        (
            "out.jsonl",
            ["--output_format", "parquet"],
            "--output_format parquet writes a folder of Parquet part files, not .jsonl",
        ),
    ],
)
def test_an_output_named_for_another_format_is_refused(name, flags, message, saved_model_dir, tmp_path, capsys):
    source = _write_jsonl(tmp_path / "papers.jsonl", _bulk_rows())
    output = tmp_path / name
    line = refused(
        capsys, ["predict", "--model", saved_model_dir, "--input_file", source, "--output_file", output, *flags]
    )  # before: JSON Lines in a file named .parquet or .csv, Parquet parts in a folder named .jsonl
    assert line.startswith(f"hf-hybrid predict: error: --output_file {output}: ") and message in line
    assert not output.exists()


def test_an_output_is_not_continued_with_another_model_saved_in_the_same_folder(saved_model_dir, tmp_path, capsys):
    model = Path(shutil.copytree(saved_model_dir, tmp_path / "model"))
    source = _write_jsonl(tmp_path / "papers.jsonl", _bulk_rows())
    output = tmp_path / "out.jsonl"
    command = [str(a) for a in ["predict", "--model", model, "--input_file", source, "--output_file", output]]
    assert main(command) == 0
    # A run killed half way: half the lines, the settings not finished.
    lines = output.read_text().splitlines(keepends=True)
    output.write_text("".join(lines[:4]))
    recorded = output.with_name(output.name + ".bulk.json")
    recorded.write_text(recorded.read_text().replace('"finished": true', '"finished": false'))
    # The folder is retrained meanwhile (here: its weights changed): the rest would be another model's results.
    tensors = load_file(model / "model.safetensors")
    tensors["hybrid.fusion.title_score.bias"] += 1.0
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    capsys.readouterr()
    line = refused(capsys, command)
    assert f"{output} was written with other settings (model_sha256 (the model's weights, config or tokenizer) " in line
    assert len(output.read_text().splitlines()) == 4


def test_a_damaged_settings_file_is_one_line(saved_model_dir, tmp_path, capsys):
    source = _write_jsonl(tmp_path / "papers.jsonl", _bulk_rows())
    output = tmp_path / "out.jsonl"
    command = ["predict", "--model", saved_model_dir, "--input_file", source, "--output_file", output]
    assert main([str(a) for a in command]) == 0
    recorded = output.with_name(output.name + ".bulk.json")
    recorded.write_text("{not json")
    capsys.readouterr()
    for argv in (command, ["merge-predictions", output, "--output_file", tmp_path / "merged.jsonl"]):
        line = refused(capsys, argv)
        assert f"{recorded} is not a settings file of hf-hybrid (" in line
        assert line.endswith("run the command that wrote the output again with --overwrite")


def test_a_shard_given_twice_to_merge_is_named(saved_model_dir, tmp_path, capsys):
    source = _write_jsonl(tmp_path / "papers.jsonl", _bulk_rows())
    shards = [tmp_path / f"shard{i}.jsonl" for i in range(2)]
    for index, shard in enumerate(shards):
        argv = ["predict", "--model", saved_model_dir, "--input_file", source, "--output_file", shard]
        assert main([str(a) for a in [*argv, "--num_shards", "2", "--shard_index", str(index)]]) == 0
    line = refused(
        capsys, ["merge-predictions", shards[0], shards[1], shards[1], "--output_file", tmp_path / "m.jsonl"]
    )
    assert line == (
        f"hf-hybrid merge-predictions: error: shard 1 of 2 is given twice ({shards[1]}, {shards[1]}): "
        "give each shard once"
    )
    line = refused(capsys, ["merge-predictions", *shards, "--output_file", tmp_path / "merged.parquet"])
    assert line.endswith("the shards are JSON Lines, not .parquet: name it .jsonl")


def test_overwrite_removes_only_what_a_bulk_prediction_wrote(saved_model_dir, tmp_path, capsys):
    rows = _bulk_rows()
    source = _write_jsonl(tmp_path / "papers.jsonl", rows)
    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.txt").write_text("mine")
    (results / "part-1.parquet").write_bytes(b"mine too")
    mine = folder_bytes(results)
    predict = ["predict", "--model", saved_model_dir, "--input_file", source, "--output_format", "parquet"]
    for workers in ([], ["--num_workers", "2"]):
        line = refused(capsys, [*predict, "--output_file", results, "--overwrite", *workers])  # before: all deleted
        assert line == (
            f"hf-hybrid predict: error: {results} is a folder that a bulk prediction did not write (no _bulk.json): "
            "--overwrite removes only the files of a bulk output; choose another --output_file"
        )
        assert folder_bytes(results) == mine
    # A folder it wrote, where the user keeps a file of their own: --overwrite replaces the parts and settings only.
    output = tmp_path / "out"
    assert main([str(a) for a in [*predict, "--output_file", output, "--chunk_size", "5"]]) == 0
    (output / "README.md").write_text("mine")
    assert main([str(a) for a in [*predict, "--output_file", output, "--chunk_size", "7", "--overwrite"]]) == 0
    parts = [f"part-{start:012d}.parquet" for start in range(0, len(rows), 7)]
    assert sorted(path.name for path in output.iterdir()) == sorted(["README.md", "_bulk.json", *parts])
    assert (output / "README.md").read_text() == "mine"


def test_workers_refuse_other_settings_before_any_of_them_starts(saved_model_dir, tmp_path, capsys):
    rows = _bulk_rows()
    source = _write_jsonl(tmp_path / "papers.jsonl", rows)
    output = tmp_path / "out.jsonl"
    predict = ["predict", "--model", saved_model_dir, "--input_file", source, "--id_column", "id"]
    # What a `--num_workers 2 --threshold 0.5` run killed early leaves: part of its first worker's shard.
    shard = tmp_path / "out.jsonl.workers" / "shard-000-of-002.jsonl"
    flags = ["--num_shards", "2", "--shard_index", "0", "--threshold", "0.5"]
    assert main([str(a) for a in [*predict, "--output_file", shard, *flags]]) == 0
    shard.write_text("".join(shard.read_text().splitlines(keepends=True)[:3]))
    recorded = shard.with_name(shard.name + ".bulk.json")
    recorded.write_text(recorded.read_text().replace('"finished": true', '"finished": false'))
    line = refused(capsys, [*predict, "--output_file", output, "--num_workers", "2", "--threshold", "0.7"])
    assert line == (  # before: each worker's traceback, then "run the same command again to go on"
        f"hf-hybrid predict: error: {output} was written with other settings (threshold 0.5 -> 0.7): resume it with "
        "the same command, choose another --output_file, or give --overwrite"
    )
    assert sorted(path.name for path in shard.parent.iterdir()) == [shard.name, recorded.name]  # no worker started
    # With the same settings it goes on, from Python too, where the model's digest is left to the workers.
    from hf_hybrid.bulk import BulkSettings, classify_with_workers

    settings = json.loads(recorded.read_text())
    del settings["finished"], settings["model_sha256"]
    classify_with_workers(BulkSettings(**{**settings, "num_shards": 1, "shard_index": 0}), str(output), 2)
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == [row["id"] for row in rows]
    assert not shard.parent.exists()


def test_a_workers_error_comes_back_as_its_one_line(tmp_path):
    import queue
    from dataclasses import asdict

    from hf_hybrid.bulk import BulkSettings
    from hf_hybrid.bulk.workers import _worker

    settings = BulkSettings(
        input_file=str(_write_jsonl(tmp_path / "papers.jsonl", _bulk_rows())),
        model=str(tmp_path / "no-model"),
        revision=None,
        title_column="title",
        abstract_column="abstract",
        id_column=None,
        top_words=5,
        top_k=None,
        threshold=None,
        fold=None,
        output_format="jsonl",
        num_shards=1,
        shard_index=0,
    )
    messages = queue.Queue()
    with pytest.raises(SystemExit) as exit_status:  # before: the worker's traceback
        _worker(settings.model, None, asdict(settings), str(tmp_path / "out.jsonl"), 8, 8, 1, messages)
    assert exit_status.value.code == 1
    message = messages.get_nowait()
    assert isinstance(message, str) and "\n" not in message and str(tmp_path / "no-model") in message


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("papers.csv", "GZIP", "is gzip-compressed, not CSV text: name it papers.csv.gz"),
        ("papers.jsonl", "GZIP", "is gzip-compressed, not JSON text: name it papers.jsonl.gz"),
        ("papers.csv", b"PK\x03\x04\x14\x00\x06\x00", "is a zip archive (an Excel workbook is one), not CSV text"),
        ("papers.csv", b"\x00\x01\x02binary\xff", "is not text (it holds NUL bytes): give a UTF-8 CSV file"),
        ("papers.csv.gz", b"id,title,abstract\n", "is not gzip-compressed, though its name ends in .gz"),
        ("papers.parquet.gz", b"PAR1", "unknown format"),
    ],
)
def test_a_file_that_is_not_what_its_name_says_is_named_by_every_command(
    name, content, message, saved_model_dir, tmp_path, capsys
):
    import gzip

    path = tmp_path / name
    text = "id,title,abstract,category\np1,Deep nets,We train nets.,cs.AI\n"
    path.write_bytes(gzip.compress(text.encode()) if content == "GZIP" else content)
    model = saved_model_dir
    for argv in (
        ["predict", "--model", model, "--input_file", path, "--output_file", tmp_path / "out.jsonl"],
        ["evaluate", "--model", model, "--test_file", path],
        ["train", "--train_file", path, "--output_dir", tmp_path / "trained"],
    ):
        line = refused(capsys, argv)  # before: "missing column(s) title, abstract; it has <binary garbage>"
        assert line.startswith(f"hf-hybrid {argv[0]}: error: {path}: ") and message in line, line
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_saved_folder_is_readable_by_whoever_may_read_the_folder(trained, tiny_model, tiny_tokenizer, tmp_path):
    import os
    import stat

    from hf_hybrid import ArxivClassificationPipeline

    umask = os.umask(0)
    os.umask(umask)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in trained.iterdir() if path.is_file()}
    assert "model.safetensors" in modes
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)  # before: model.safetensors 0600
    # Under a stricter umask, the weights follow it as every other file does.
    os.umask(0o027)
    try:
        ArxivClassificationPipeline(model=tiny_model, tokenizer=tiny_tokenizer).save_pretrained(str(tmp_path / "m"))
    finally:
        os.umask(umask)
    assert {stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "m").iterdir()} == {0o640}


def run_unprivileged(argv: list) -> tuple[int, str]:
    """Runs the CLI in a fresh process that file permissions bind: as root, one without the capabilities that let
    root read any file (`setpriv`, util-linux)."""
    import os

    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root, and setpriv (util-linux) is not there to drop root's file access")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    command = [*prefix, sys.executable, "-m", "hf_hybrid.cli", *map(str, argv)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


def test_an_unreadable_file_is_reported_as_unreadable(trained_copy, papers_csv, tmp_path):
    weights = trained_copy / "model.safetensors"
    weights.chmod(0)
    status, err = run_unprivileged(["predict", "--model", trained_copy, "--title", "Deep nets"])
    assert status == 1 and "Traceback" not in err, err[-3000:]
    assert err.splitlines()[-1] == (  # before: "No such file or directory"
        f"hf-hybrid predict: error: {weights}: cannot be read (Permission denied): its owner can make it readable "
        "(chmod a+r)"
    )
    papers = Path(shutil.copy(papers_csv, tmp_path / "papers.csv"))
    papers.chmod(0)
    weights.chmod(0o644)
    for argv in (
        ["predict", "--model", trained_copy, "--input_file", papers, "--output_file", tmp_path / "out.jsonl"],
        ["train", "--train_file", papers, "--output_dir", tmp_path / "out"],
    ):
        status, err = run_unprivileged(argv)
        assert status == 1 and err.splitlines()[-1] == (
            f"hf-hybrid {argv[0]}: error: {papers}: cannot be read (Permission denied): check its permissions"
        ), err[-3000:]
