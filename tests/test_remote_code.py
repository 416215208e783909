"""A saved folder is self-contained: a fresh process without hf_hybrid loads it with trust_remote_code.

The loading side runs in a subprocess whose import system refuses `hf_hybrid` (the package is installed
editable in the venv, so merely changing the working directory would not hide it).
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SAVED_TEMPERATURE
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

import hf_hybrid.model
from hf_hybrid import (
    HybridCNNLSTMConfig,
    HybridCNNLSTMForSequenceClassification,
    HybridCNNLSTMModel,
    HybridCNNLSTMTokenizer,
)
from hf_hybrid.hub import pushed_files

from fresh_process import without_hf_hybrid

SHIPPED_FILES = {
    "configuration_hybrid_cnn_lstm.py",
    "modeling_hybrid_cnn_lstm.py",
    "layers_hybrid_cnn_lstm.py",
    "loading_hybrid_cnn_lstm.py",
    "folding_hybrid_cnn_lstm.py",
    "tokenization_hybrid_cnn_lstm.py",
    "pipeline_arxiv_classification.py",
    "handler.py",
}
# `tokenizers` and `safetensors` are dependencies of `transformers`, so wherever it is installed, they are.
SHIPPED_PACKAGES = {"torch", "transformers", "tokenizers", "safetensors"}
ALLOWED_IMPORTS = {"dataclasses", "collections.abc", "hashlib", "os", "pathlib", "re", "__future__"}

TITLES = ["Attention is all you need", "Solving the Schrödinger equation with zebra networks", ""]
ABSTRACTS = [
    "We propose a new network architecture based solely on attention for language translation.",
    "A deep neural network solves the electronic Schrödinger equation for small molecules " * 3,
    "Message passing neural networks predict molecule properties.",
]

FRESH_PROCESS = without_hf_hybrid(
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    folder, titles, abstracts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]))  # as in the test process, so that kernels round alike
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    def folding_modules():
        return sorted(name for name in sys.modules if name.endswith(".folding_hybrid_cnn_lstm"))

    with torch.no_grad():
        logits = model(**tokenizer(titles, abstracts, padding=True, return_tensors="pt")).logits
        batch = tokenizer(titles, abstracts, padding=True, return_tensors="pt")
        folding_before = folding_modules()
        folded_logits = model.fold_for_inference()(**batch).logits
    classify = pipeline(model=folder, trust_remote_code=True)
    print(json.dumps({
        **hf_hybrid_absence(),
        "config_class": type(config).__name__,
        "model_type": config.model_type,
        "classes": {
            name: [type(obj).__name__, type(obj).__module__]
            for name, obj in [("config", config), ("tokenizer", tokenizer), ("model", model),
                              ("encoder", encoder), ("pipeline", classify)]
        },
        "max_lengths": [tokenizer.max_title_length, tokenizer.max_abstract_length],
        "calibration_temperature": config.calibration_temperature,
        "logits": logits.tolist(),
        "folded_logits": folded_logits.tolist(),
        "folding_modules": [folding_before, folding_modules()],
        "folded_tables": [type(model.hybrid._folded_encoders).__module__, str(model.folded_for_inference)],
        "folded_pipeline_result": pipeline(model=folder, trust_remote_code=True, fold_for_inference=True)(
            {"title": titles[0], "abstract": abstracts[0]}),
        "encoder_embedding": encoder.embedding.weight.tolist(),
        "pipeline_result": classify({"title": titles[0], "abstract": abstracts[0]}),
    }))
    """
)


@pytest.fixture(scope="module")
def fresh_process(saved_model_dir, tmp_path_factory):
    """What a process that cannot import hf_hybrid loads from `saved_model_dir`, as JSON."""
    workdir = tmp_path_factory.mktemp("fresh_process")
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(workdir / "hf_home"),
        PYTHONNOUSERSITE="1",
        PYTHONPATH="",
        TRANSFORMERS_VERBOSITY="error",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS,
            str(saved_model_dir),
            json.dumps(TITLES),
            json.dumps(ABSTRACTS),
            str(torch.get_num_threads()),
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"fresh process failed:\n{proc.stderr[-5000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fresh_process_never_imports_hf_hybrid(fresh_process):
    assert fresh_process["hf_hybrid_refused"]  # the guard works, so everything above it ran without hf_hybrid
    assert fresh_process["hf_hybrid_modules"] == []


def test_fresh_process_uses_the_code_shipped_in_the_folder(fresh_process):
    classes = fresh_process["classes"]
    assert {name: cls for name, (cls, _) in classes.items()} == {
        "config": "HybridCNNLSTMConfig",
        "tokenizer": "HybridCNNLSTMTokenizer",
        "model": "HybridCNNLSTMForSequenceClassification",
        "encoder": "HybridCNNLSTMModel",
        "pipeline": "ArxivClassificationPipeline",
    }
    for name, (_, module) in classes.items():
        assert module.startswith("transformers_modules."), (name, module)
    assert fresh_process["model_type"] == "hybrid_cnn_lstm"
    assert fresh_process["max_lengths"] == [8, 16]
    # The logits it gives (compared bitwise with this process's below) are divided by this temperature.
    assert fresh_process["calibration_temperature"] == SAVED_TEMPERATURE


def test_fresh_process_gives_bitwise_identical_logits(fresh_process, saved_model_dir, saved_model, tiny_tokenizer):
    inputs = tiny_tokenizer(TITLES, ABSTRACTS, padding=True, return_tensors="pt")
    # Loaded the same way (memory-mapped safetensors), both processes must compute exactly the same.
    reloaded = HybridCNNLSTMForSequenceClassification.from_pretrained(saved_model_dir).eval()
    with torch.no_grad():
        expected = reloaded(**inputs).logits
        original = saved_model(**inputs).logits
    logits = torch.tensor(fresh_process["logits"], dtype=torch.float32)
    torch.testing.assert_close(logits, expected, atol=0, rtol=0)
    torch.testing.assert_close(logits, original, atol=1e-6, rtol=1e-6)


def test_fresh_process_folds_the_model_for_inference_with_the_same_results(fresh_process):
    # The folding code is the folder's, imported only when the model was folded.
    before, after = fresh_process["folding_modules"]
    assert before == [] and len(after) == 1 and after[0].startswith("transformers_modules.")
    assert fresh_process["folded_tables"] == [after[0], "torch.float32"]
    torch.testing.assert_close(
        torch.tensor(fresh_process["folded_logits"]), torch.tensor(fresh_process["logits"]), atol=1e-5, rtol=0
    )
    folded, plain = fresh_process["folded_pipeline_result"], fresh_process["pipeline_result"]
    assert folded["label"] == plain["label"]
    assert folded["scores"] == pytest.approx(plain["scores"], abs=1e-5)


def test_fresh_process_encoder_has_the_saved_embedding(fresh_process, saved_model):
    embedding = torch.tensor(fresh_process["encoder_embedding"], dtype=torch.float32)
    assert torch.equal(embedding, saved_model.hybrid.embedding.weight.detach())


def test_fresh_process_pipeline_gives_the_same_result(fresh_process, saved_model_dir):
    local = pipeline(model=str(saved_model_dir), trust_remote_code=True)
    result = local({"title": TITLES[0], "abstract": ABSTRACTS[0]})
    remote = fresh_process["pipeline_result"]
    assert remote["label"] == result["label"]
    assert remote["scores"] == pytest.approx(result["scores"], abs=1e-6)
    assert [w["word"] for w in remote["abstract_words"]] == [w["word"] for w in result["abstract_words"]]


# --- what the folder ships ---


def test_every_file_of_the_model_code_is_shipped_pushed_and_listed(saved_model_dir):
    """A new sibling of the model code that a saved folder or a push left out would break loading from it."""
    package = {path.name for path in Path(hf_hybrid.model.__file__).parent.glob("*.py")} - {"__init__.py"}
    saved = {path.name for path in saved_model_dir.glob("*.py")}
    assert saved == package == SHIPPED_FILES == set(hf_hybrid.model.CODE_FILES)
    assert set(pushed_files(saved_model_dir)) >= SHIPPED_FILES


def test_saved_folder_ships_the_model_code(saved_model_dir):
    names = {path.name for path in saved_model_dir.iterdir()}
    assert SHIPPED_FILES <= names
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    tokenizer_config = json.loads((saved_model_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["auto_map"]["AutoTokenizer"][0] == "tokenization_hybrid_cnn_lstm.HybridCNNLSTMTokenizer"


@pytest.mark.parametrize("filename", sorted(SHIPPED_FILES))
def test_shipped_file_imports_only_torch_transformers_and_its_siblings(saved_model_dir, filename):
    tree = ast.parse((saved_model_dir / filename).read_text())
    siblings = {name.removesuffix(".py") for name in SHIPPED_FILES}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            assert node.level == 1 and node.module in siblings, f"line {node.lineno}: relative import {node.module}"
            continue
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module]
        else:
            continue
        for module in modules:
            allowed = module in ALLOWED_IMPORTS or module.split(".")[0] in SHIPPED_PACKAGES
            assert allowed, f"line {node.lineno}: {filename} imports {module}"


# --- in a process that imports hf_hybrid, no remote code is needed for the Auto classes ---


def test_auto_classes_load_the_packages_classes_without_remote_code(saved_model_dir):
    assert type(AutoConfig.from_pretrained(saved_model_dir)) is HybridCNNLSTMConfig
    assert type(AutoTokenizer.from_pretrained(saved_model_dir)) is HybridCNNLSTMTokenizer
    assert type(AutoModelForSequenceClassification.from_pretrained(saved_model_dir)) is (
        HybridCNNLSTMForSequenceClassification
    )
    assert type(AutoModel.from_pretrained(saved_model_dir)) is HybridCNNLSTMModel
