"""`hf-hybrid evaluate`: a model's metrics on a table of labelled papers, printed as JSON."""

import json
from pathlib import Path

from ..loading import load_trained
from . import description
from .model_options import chosen_device, fold_if_asked, model_parser


def run_evaluate(argv: list[str]) -> None:
    parser = model_parser("hf-hybrid evaluate", description("evaluate"))
    parser.add_argument("--test_file", required=True)
    parser.add_argument("--title_column", default="title")
    parser.add_argument("--abstract_column", default="abstract")
    parser.add_argument("--label_column", default="category")
    parser.add_argument("--output_file", help="also write the full report (per class, confusion matrix) here")
    args = parser.parse_args(argv)
    import numpy as np

    from ..data import tokenize_papers
    from ..evaluation import CALIBRATION_METRICS, evaluation_report, predict_logits, summary_metrics
    from ..ranges import AT_LEAST_ONE, check_ranges
    from ..tables import LABEL_COLUMN, encode_labels, prepare_table, read_table

    check_ranges(args, {"batch_size": AT_LEAST_ONE})
    device = chosen_device(args)
    tokenizer, model = load_trained(args.model, args.revision)
    fold_if_asked(model.to(device), args)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    multi_label = model.config.is_multi_label
    table = prepare_table(
        read_table(args.test_file),
        args.title_column,
        args.abstract_column,
        args.label_column,
        source=args.test_file,
        multi_label=multi_label,
    )
    tokenized = tokenize_papers(
        encode_labels(table, label_names, source=args.test_file, multi_label=multi_label), tokenizer
    )
    logits = predict_logits(model, tokenizer, tokenized, batch_size=args.batch_size, description="Evaluating")
    labels = np.asarray(tokenized[LABEL_COLUMN])
    report = evaluation_report(labels, logits, label_names, model.config.label_thresholds)
    if args.output_file:
        Path(args.output_file).write_text(json.dumps(report, indent=2))
    summary = {
        key: report[key] for key in (*summary_metrics(labels), *CALIBRATION_METRICS, "num_samples") if key in report
    }
    if not multi_label:
        summary["coverage"] = report["coverage"]
    summary["per_class_f1"] = {name: scores["f1-score"] for name, scores in report["per_class"].items()}
    print(json.dumps(summary, indent=2))
