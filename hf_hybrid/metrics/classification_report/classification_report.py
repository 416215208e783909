"""Classification report: accuracy, macro and weighted F1, per-class precision/recall/F1 and the confusion matrix.

An `evaluate` metric module that ships inside hf-hybrid and is loaded from its folder, so it needs no
network (a metric named by the Hub, such as `evaluate.load("accuracy")`, is downloaded first). scikit-learn
computes every number. It is loaded by its path; `evaluate` copies it into its modules cache to import it:

```python
>>> import evaluate
>>> from hf_hybrid.evaluation import METRIC_PATH
>>> metric = evaluate.load(str(METRIC_PATH), keep_in_memory=True)
>>> scores = metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], label_names=["cs.AI", "cs.CL"])
>>> scores["accuracy"], scores["confusion_matrix"]
(0.6666666666666666, [[1, 1], [0, 1]])
```
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

_DESCRIPTION = __doc__.split("\n\n")[0]

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
    label_names (`list` of `str`): the name of each class id, in order; every class is reported, including
        classes that neither list contains.
Returns:
    accuracy (`float`), f1_macro (`float`), f1_weighted (`float`): F1 averages over the classes that the
        references or the predictions contain;
    per_class (`dict`): for each label name, its precision, recall, f1-score and support (true papers);
    confusion_matrix (`list` of `list` of `int`): row i, column j counts papers of class i predicted as j.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClassificationReport(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(self, predictions, references, label_names):
        ids = list(range(len(label_names)))
        precision, recall, f1, support = precision_recall_fscore_support(
            references, predictions, labels=ids, zero_division=0
        )
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "f1_macro": float(f1_score(references, predictions, average="macro", zero_division=0)),
            "f1_weighted": float(f1_score(references, predictions, average="weighted", zero_division=0)),
            "per_class": {
                name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1-score": float(f1[i]),
                       "support": float(support[i])}
                for i, name in enumerate(label_names)
            },
            "confusion_matrix": confusion_matrix(references, predictions, labels=ids).tolist(),
        }
