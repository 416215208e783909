"""Push to the Hub, load by repo id, pipelines and the CLI by repo id, and how pushing fails, against a
Hub-protocol server on loopback (tests/hub_server.py) driven by the real huggingface_hub and transformers.

Client steps run in subprocesses pointed at the server (`HF_ENDPOINT` is read when huggingface_hub is imported);
independent ones run side by side to keep the module quick. The base model is trained and pushed once per
session by `hub_fixtures.hub_model`.
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml

pytest.register_assert_rewrite("hub_fixtures")  # before its import below, so that its asserts explain failures

from hf_hybrid import ArxivClassificationPipeline, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer

from fresh_process import without_hf_hybrid
from hub_fixtures import CLI, CODE_FILES, ROOT, client_env, folder_hashes, run, run_side_by_side
from hub_server import HubServer

pytest_plugins = ["hub_fixtures"]

TITLES = ["Planning agents with symbolic reasoning", "Parsing sentences of a speech corpus", "Segmentation of video"]
ABSTRACTS = [
    "We propose reinforcement learning agents whose policy uses knowledge search and logic.",
    "Our translation method improves grammar of dialogue text, and unseen zebra words.",
    "",
]

# Runs in a process that cannot import hf_hybrid: everything it loads comes from the Hub repo's code.
FRESH_PROCESS = without_hf_hybrid(
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    repo, sha, titles, abstracts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    config = AutoConfig.from_pretrained(repo, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True).eval()
    encoder = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
    pinned_tokenizer = AutoTokenizer.from_pretrained(repo, revision=sha, trust_remote_code=True)
    pinned = AutoModelForSequenceClassification.from_pretrained(repo, revision=sha, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**tokenizer(titles, abstracts, padding=True, return_tensors="pt")).logits
        pinned_logits = pinned(**pinned_tokenizer(titles, abstracts, padding=True, return_tensors="pt")).logits
    text_classifier = pipeline("text-classification", model=repo, trust_remote_code=True)
    arxiv_classifier = pipeline("arxiv-classification", model=repo, revision=sha, trust_remote_code=True)
    print(json.dumps({
        **hf_hybrid_absence(),
        "classes": {
            name: [type(obj).__name__, type(obj).__module__]
            for name, obj in [("config", config), ("tokenizer", tokenizer), ("model", model), ("encoder", encoder),
                              ("pinned", pinned), ("text_classifier", text_classifier),
                              ("arxiv_classifier", arxiv_classifier)]
        },
        "id2label": {str(k): v for k, v in config.id2label.items()},
        "logits": logits.tolist(),
        "pinned_logits": pinned_logits.tolist(),
        "encoder_embedding": encoder.embedding.weight.tolist(),
        "text_classification": text_classifier({"text": titles[0], "text_pair": abstracts[0]}, top_k=None),
        "arxiv_classification": arxiv_classifier({"title": titles[0], "abstract": abstracts[0]}),
    }))
    """
)

# Runs `hf-hybrid` commands one after the other in one process (the same `main` as the console script), then
# `check_hub_access` calls, and prints what each did: one interpreter start instead of one per command.
SESSION = textwrap.dedent(
    """
    import contextlib, io, json, logging, sys, time
    import hf_hybrid.training  # what `train` imports when it runs, here first: the timings are the commands' own work
    from hf_hybrid.cli import main
    from hf_hybrid.hub import HubError, check_hub_access

    logging.basicConfig(stream=sys.__stderr__, level=logging.INFO)  # keep the commands' logs out of the captures
    plan = json.loads(sys.argv[1])
    report = {"commands": [], "access": {}}
    for argv in plan.get("commands", []):
        out, err, start = io.StringIO(), io.StringIO(), time.monotonic()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
        report["commands"].append({"argv": argv, "status": status, "stdout": out.getvalue(), "stderr": err.getvalue(),
                                   "seconds": time.monotonic() - start})
    for name, kwargs in plan.get("access", {}).items():
        try:
            report["access"][name] = ["ok", check_hub_access(**kwargs)]
        except HubError as error:
            report["access"][name] = ["HubError", str(error)]
    print(json.dumps(report))
    """
)


def closed_port_url() -> str:
    """The URL of a loopback port that nothing listens on: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def local_model(folder):
    """The model and tokenizer of a local folder, loaded by hf_hybrid's own classes (no Hub involved)."""
    return (
        HybridCNNLSTMForSequenceClassification.from_pretrained(folder).eval(),
        HybridCNNLSTMTokenizer.from_pretrained(folder),
    )


def hub_api(server: HubServer, path: str, token: str | None) -> tuple[int, object]:
    """(status, JSON) of a plain GET to the server's API, as anyone (token None) or as the token's owner."""
    request = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def last_json(text: str):
    return json.loads(text.strip().splitlines()[-1])


# --------------------------------------------------------------------------- clients of the pushed base model


@pytest.fixture(scope="module")
def dev_folder(hub_model, tmp_path_factory):
    """The base model with a shifted output bias, saved for a push to the `dev` branch (so main and dev differ)."""
    model, tokenizer = local_model(hub_model.folder)
    output = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        output.bias += torch.arange(model.config.num_labels, dtype=torch.float32)
    folder = tmp_path_factory.mktemp("dev_model")
    ArxivClassificationPipeline(model=model, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def down_hub():
    """A second Hub double, for the pushes that find the Hub down (it answers 503 while offline)."""
    with HubServer() as server:
        yield server
        assert server.unhandled == []


@pytest.fixture(scope="module")
def side_by_side(hub_server, down_hub, hub_home, hub_model, dev_folder, tmp_path_factory):
    """Every client of this module that does not depend on another, run at the same time:

    * `fresh`: a process that cannot import hf_hybrid loads the repo (Auto classes, pipelines, a pinned commit);
    * `cli`: `hf-hybrid predict`/`evaluate` by repo id, `push --revision dev`, `predict --revision dev`;
    * `failing`: without a token, `train --push_to_hub`, an invalid repo id, a push of a folder that is not a
      model, and `check_hub_access` against each kind of failure;
    * `push_down`: `hf-hybrid push` of a trained folder while the Hub answers 503.
    """
    repo, sha = hub_model.repo_id, hub_server.revision_sha(hub_model.repo_id)
    work = tmp_path_factory.mktemp("failures")
    trained = work / "trained"  # a trained folder of its own, so that nothing can touch the base model's
    trained.mkdir()
    for path in hub_model.folder.iterdir():
        (trained / path.name).write_bytes(path.read_bytes())
    empty = work / "empty"
    (empty / "checkpoint-1").mkdir(parents=True)  # what a run stopped early may leave
    paper = ["--title", TITLES[0], "--abstract", ABSTRACTS[0]]
    train = ["train", "--train_file", str(hub_model.papers), "--num_train_epochs", "1", "--push_to_hub"]
    token = hub_server.token
    plans = {
        "cli": {
            "commands": [
                ["predict", "--model", repo, *paper],
                ["evaluate", "--model", repo, "--test_file", str(hub_model.papers)],
                ["push", "--model", str(dev_folder), "--repo_id", repo, "--revision", "dev", "--commit_message", "dev"],
                ["predict", "--model", repo, "--revision", "dev", *paper],
                ["push", "--model", str(dev_folder), "--repo_id", "bare-name"],  # no namespace: the user's
            ]
        },
        "failing": {
            "commands": [
                [*train, "--output_dir", str(work / "no_token"), "--hub_model_id", "test-user/never"],
                [*train, "--output_dir", str(work / "invalid_id"), "--hub_model_id", "not a valid id!!"],
                ["push", "--model", str(empty), "--repo_id", "test-user/nothing"],
            ],
            "access": {
                "valid": {"repo_id": "test-user/x", "token": token, "endpoint": hub_server.url},
                "no_token": {"repo_id": "test-user/x", "endpoint": hub_server.url},
                "refused": {"repo_id": "test-user/x", "token": "hf_wrong", "endpoint": hub_server.url},
                "invalid_id": {"repo_id": "not a valid id!!", "token": token, "endpoint": hub_server.url},
                "down": {"repo_id": "test-user/x", "token": token, "endpoint": down_hub.url},
                "unreachable": {"repo_id": "test-user/x", "token": token, "endpoint": closed_port_url()},
            },
        },
    }
    down_hub.set_offline(True)
    try:
        runs = run_side_by_side(
            {
                "fresh": (
                    [sys.executable, "-c", FRESH_PROCESS, repo, sha, json.dumps(TITLES), json.dumps(ABSTRACTS)],
                    client_env(hub_server, hub_home()),
                ),
                "cli": (
                    [sys.executable, "-c", SESSION, json.dumps(plans["cli"])],
                    client_env(hub_server, hub_home(), threads=1),
                ),
                "failing": (
                    [sys.executable, "-c", SESSION, json.dumps(plans["failing"])],
                    client_env(hub_server, hub_home(), token=False, threads=1),
                ),
                "push_down": (
                    [*CLI, "push", "--model", trained, "--repo_id", "test-user/retried", "--private"],
                    client_env(down_hub, hub_home(), threads=1),
                ),
            }
        )
    finally:
        down_hub.set_offline(False)
    return {"sha": sha, "work": work, "trained": trained, "runs": runs}


@pytest.fixture(scope="module")
def clients(side_by_side):
    """What the loading clients reported: `fresh` and each CLI command by name."""
    runs = side_by_side["runs"]
    fresh, cli = last_json(runs["fresh"].check().stdout), last_json(runs["cli"].check().stdout)["commands"]
    for result in cli:
        assert result["status"] == 0, result
    return {
        "fresh": fresh,
        "sha": side_by_side["sha"],
        **dict(zip(["predict", "evaluate", "push_dev", "predict_dev", "push_bare"], cli)),
    }


@pytest.fixture(scope="module")
def failing(side_by_side):
    """What the session without a token reported: each command by name, and the login checks."""
    report = last_json(side_by_side["runs"]["failing"].check().stdout)
    return {"access": report["access"], **dict(zip(["no_token", "invalid_id", "not_a_model"], report["commands"]))}


def test_train_push_to_hub_uploads_the_model(hub_server, hub_model):
    assert "pushed to " in hub_model.run.stderr
    assert hub_server.revision_sha(hub_model.repo_id) in hub_model.run.stderr  # the logged commit URL


def test_pushed_repo_has_weights_tokenizer_code_card_plots_and_reports_but_no_pickle(hub_server, hub_model):
    files = hub_server.files(hub_model.repo_id)
    names = set(files)
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "eval_results.json",
        "training_args.json",
        "classification_report.txt",
    } <= names
    assert CODE_FILES <= names
    assert {"training_history.png", "confusion_matrix.png", "attention.png", "calibration.png"} <= names
    assert not [n for n in names if n.startswith(("checkpoint-", "runs/")) or n.endswith((".bin", ".pt", ".pkl"))]
    for name, data in files.items():  # no pickle under any name: neither protocol 2+ nor torch.save's zip
        if name.endswith(".safetensors"):
            # Its first 8 bytes are the length of the JSON header that follows (and may start with 0x80).
            header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
            assert header["__metadata__"] == {"format": "pt"}, name
        else:
            assert not data.startswith((b"\x80", b"PK\x03\x04")), name
    # What was pushed is what the folder holds, byte for byte (the Trainer's pickle stayed out of both).
    local = {p.name for p in hub_model.folder.iterdir()}
    assert "training_args.bin" not in local
    for name in names - {".gitattributes"}:
        assert files[name] == (hub_model.folder / name).read_bytes(), name
    assert names - {".gitattributes"} == local


def test_pushed_config_declares_auto_classes_and_the_custom_pipeline(hub_server, hub_model):
    config = json.loads(hub_server.files(hub_model.repo_id)["config.json"])
    assert config["model_type"] == "hybrid_cnn_lstm"
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    assert config["custom_pipelines"]["arxiv-classification"]["impl"] == (
        "pipeline_arxiv_classification.ArxivClassificationPipeline"
    )
    tokenizer_config = json.loads(hub_server.files(hub_model.repo_id)["tokenizer_config.json"])
    assert tokenizer_config["auto_map"]["AutoTokenizer"][0] == "tokenization_hybrid_cnn_lstm.HybridCNNLSTMTokenizer"


def test_pushed_card_has_model_index_metrics_and_the_repo_id(hub_server, hub_model):
    card = hub_server.files(hub_model.repo_id)["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    results = metadata["model-index"][0]["results"][0]
    assert results["task"]["type"] == "text-classification"
    assert {m["type"] for m in results["metrics"]} == {"accuracy", "f1", "expected_calibration_error", "log_loss"}
    test_report = json.loads(hub_server.files(hub_model.repo_id)["eval_results.json"])["test"]
    values = {m["type"]: m["value"] for m in results["metrics"]}
    assert values["accuracy"] == round(test_report["accuracy"], 4)
    assert values["expected_calibration_error"] == round(test_report["expected_calibration_error"], 4)
    assert "## Scores you can act on" in card and "| 0.90 |" in card and "![calibration.png](calibration.png)" in card
    assert metadata["pipeline_tag"] == "text-classification" and "custom_code" in metadata["tags"]
    assert f'repo = "{hub_model.repo_id}"' in card
    training_args = json.loads(hub_server.files(hub_model.repo_id)["training_args.json"])
    assert training_args["hub_model_id"] == hub_model.repo_id and training_args["seed"] == 0


def test_fresh_process_without_hf_hybrid_loads_the_repo_with_its_code(clients):
    fresh = clients["fresh"]
    assert fresh["hf_hybrid_refused"] and fresh["hf_hybrid_modules"] == []
    assert {name: cls for name, (cls, _) in fresh["classes"].items()} == {
        "config": "HybridCNNLSTMConfig",
        "tokenizer": "HybridCNNLSTMTokenizer",
        "model": "HybridCNNLSTMForSequenceClassification",
        "encoder": "HybridCNNLSTMModel",
        "pinned": "HybridCNNLSTMForSequenceClassification",
        "text_classifier": "TextClassificationPipeline",
        "arxiv_classifier": "ArxivClassificationPipeline",
    }
    for name, (_, module) in fresh["classes"].items():
        if name != "text_classifier":  # the stock pipeline is transformers' own
            assert module.startswith("transformers_modules."), (name, module)
    assert fresh["id2label"] == {"0": "cs.AI", "1": "cs.CL", "2": "cs.CV"}


def test_loaded_by_repo_id_and_by_commit_the_logits_equal_the_local_folders(clients, hub_model):
    model, tokenizer = local_model(hub_model.folder)
    with torch.no_grad():
        expected = model(**tokenizer(TITLES, ABSTRACTS, padding=True, return_tensors="pt")).logits
    for key in ("logits", "pinned_logits"):
        torch.testing.assert_close(torch.tensor(clients["fresh"][key]), expected, atol=0, rtol=0)
    assert torch.equal(torch.tensor(clients["fresh"]["encoder_embedding"]), model.hybrid.embedding.weight.detach())


def test_pipelines_by_repo_id_match_the_local_model(clients, hub_model):
    model, tokenizer = local_model(hub_model.folder)
    local = ArxivClassificationPipeline(model=model, tokenizer=tokenizer)(
        {"title": TITLES[0], "abstract": ABSTRACTS[0]}
    )
    remote = clients["fresh"]["arxiv_classification"]
    assert remote["label"] == local["label"]
    assert remote["scores"] == pytest.approx(local["scores"], abs=1e-6)
    assert remote["fusion_weights"] == pytest.approx(local["fusion_weights"], abs=1e-6)
    assert [w["word"] for w in remote["title_words"]] == [w["word"] for w in local["title_words"]]
    stock = {item["label"]: item["score"] for item in clients["fresh"]["text_classification"]}
    assert stock == pytest.approx(local["scores"], abs=1e-6)


def test_cli_predict_by_repo_id(clients, hub_model):
    model, tokenizer = local_model(hub_model.folder)
    local = ArxivClassificationPipeline(model=model, tokenizer=tokenizer)(
        {"title": TITLES[0], "abstract": ABSTRACTS[0]}
    )
    result = last_json(clients["predict"]["stdout"])
    assert result["label"] == local["label"]
    assert result["scores"] == pytest.approx(local["scores"], abs=1e-6)


def test_cli_evaluate_by_repo_id(clients, hub_model):
    summary = json.loads(clients["evaluate"]["stdout"])
    assert summary["num_samples"] == 120  # every paper of the table
    assert set(summary["per_class_f1"]) == {"cs.AI", "cs.CL", "cs.CV"}
    assert 0 <= summary["accuracy"] <= 1


def test_push_to_a_branch_leaves_main_alone_and_loads_with_that_revision(clients, hub_server, hub_model, dev_folder):
    dev_files, main_files = hub_server.files(hub_model.repo_id, "dev"), hub_server.files(hub_model.repo_id)
    assert dev_files["model.safetensors"] == (dev_folder / "model.safetensors").read_bytes()
    assert main_files["model.safetensors"] == (hub_model.folder / "model.safetensors").read_bytes()
    assert hub_server.revision_sha(hub_model.repo_id) == clients["sha"]
    assert clients["push_dev"]["stdout"].strip().endswith(hub_server.revision_sha(hub_model.repo_id, "dev"))
    history = hub_api(hub_server, f"/api/models/{hub_model.repo_id}/commits/dev", token=hub_server.token)[1]
    assert history[0]["title"] == "dev"  # --commit_message

    model, tokenizer = local_model(dev_folder)
    local = ArxivClassificationPipeline(model=model, tokenizer=tokenizer)(
        {"title": TITLES[0], "abstract": ABSTRACTS[0]}
    )
    on_dev, on_main = last_json(clients["predict_dev"]["stdout"]), last_json(clients["predict"]["stdout"])
    assert on_dev["scores"] == pytest.approx(local["scores"], abs=1e-6)
    assert on_dev["scores"] != pytest.approx(on_main["scores"], abs=1e-3)


def test_push_to_a_repo_name_without_namespace_goes_to_the_users_namespace(clients, hub_server, dev_folder):
    files = hub_server.files("test-user/bare-name")
    assert files["model.safetensors"] == (dev_folder / "model.safetensors").read_bytes()
    assert clients["push_bare"]["stdout"].strip().endswith(hub_server.revision_sha("test-user/bare-name"))


# --------------------------------------------------------------------------- failures


def test_push_to_hub_without_a_token_fails_before_training(failing, side_by_side):
    result = failing["no_token"]
    assert result["status"] == 1
    assert result["stderr"] == (
        "hf-hybrid train: error: not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN\n"
    )
    assert result["seconds"] < 2  # in-process time of the command (about 15 ms): arguments parsed, no token found
    assert not (side_by_side["work"] / "no_token").exists()  # no vocabulary, no checkpoint: training never started


def test_invalid_repo_id_fails_before_training(failing, side_by_side):
    result = failing["invalid_id"]
    assert result["status"] == 1
    [line] = result["stderr"].splitlines()
    assert line.startswith("hf-hybrid train: error: invalid repo id 'not a valid id!!': ")
    assert result["seconds"] < 2
    assert not (side_by_side["work"] / "invalid_id").exists()


def test_push_of_a_folder_that_is_not_a_model_fails_in_one_line(failing, side_by_side):
    result = failing["not_a_model"]
    assert result["status"] == 1
    assert result["stderr"] == (
        f"hf-hybrid push: error: {side_by_side['work'] / 'empty'} is not a saved model folder "
        "(config.json and model.safetensors are missing)\n"
    )


def test_login_check_tells_each_failure_apart(failing):
    checks = failing["access"]
    assert checks["valid"] == ["ok", "test-user"]
    assert checks["no_token"] == [
        "HubError",
        "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN",
    ]
    assert checks["refused"] == [
        "HubError",
        "the Hub refused the token: run `hf auth login` again or set a valid HF_TOKEN",
    ]
    assert checks["invalid_id"][1].startswith("invalid repo id 'not a valid id!!'")
    assert checks["down"][1].endswith("is unavailable right now (HTTP 503): try again later")
    assert checks["unreachable"][1].startswith("cannot reach the Hub at http://127.0.0.1:")
    for kind, (_, message) in checks.items():
        assert "\n" not in message, kind


def test_push_to_a_hub_that_is_down_fails_in_one_line_and_can_be_run_again(side_by_side, down_hub, hub_home):
    trained, result = side_by_side["trained"], side_by_side["runs"]["push_down"]
    before = folder_hashes(trained)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.error_lines()
    assert line.startswith(f"hf-hybrid push: error: the Hub at {down_hub.url} is unavailable right now (HTTP 503)")
    assert line.endswith(
        f"the folder is intact: run `hf-hybrid push --model {trained} --repo_id test-user/retried --private` again"
    )
    # While it was down, the Hub saw one login check from this push and one from the `failing` session's
    # `check_hub_access`: no retry loop, no upload attempt.
    assert down_hub.requests == [("GET", "/api/whoami-v2")] * 2
    assert folder_hashes(trained) == before

    retry = run(
        [*CLI, "push", "--model", trained, "--repo_id", "test-user/retried", "--private"],
        client_env(down_hub, hub_home()),
    )
    retry.check()
    assert retry.stdout.strip().endswith(down_hub.revision_sha("test-user/retried"))
    pushed = down_hub.files("test-user/retried")
    assert {name: data for name, data in pushed.items() if name not in (".gitattributes", "README.md")} == {
        p.name: p.read_bytes() for p in trained.iterdir() if p.name != "README.md"
    }
    assert 'repo = "test-user/retried"' in pushed["README.md"].decode()  # the card written for this repo
    assert folder_hashes(trained) == before
    # --private: the Hub hides the repo from anonymous callers and shows it to its owner.
    assert hub_api(down_hub, "/api/models/test-user/retried", token=None)[0] == 401
    assert hub_api(down_hub, "/api/models/test-user/retried", token=down_hub.token)[1]["private"] is True


def test_only_safe_files_are_pushed_and_the_card_gets_the_repo_id(hub_model, tmp_path):
    """What a push would send, computed without a Hub: `push_model_folder` commits exactly these operations."""
    from hf_hybrid.hub import _operations, pushed_files
    from hf_hybrid.model_card import ModelCardFacts, build_model_card

    for path in hub_model.folder.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    for name in (
        "training_args.bin",
        "checkpoint-4/optimizer.pt",
        "checkpoint-4/trainer_state.json",
        "runs/events.out",
        ".cache/huggingface/upload/x.json",
        "notes.pkl",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"\x80\x04 pickled")
    card = (tmp_path / "README.md").read_text()

    assert pushed_files(tmp_path) == sorted(p.name for p in hub_model.folder.iterdir())
    # To the repo it was trained for, the card goes up as written (sent from disk, as every other file).
    operations = {op.path_in_repo: op.path_or_fileobj for op in _operations(tmp_path, hub_model.repo_id)}
    assert operations["README.md"] == str(tmp_path / "README.md")
    assert operations["model.safetensors"] == str(tmp_path / "model.safetensors")
    # To another repo, a card written whole for it, from the same facts: only the repo's name differs.
    operations = {op.path_in_repo: op.path_or_fileobj for op in _operations(tmp_path, "someone/renamed")}
    pushed_card = operations["README.md"].decode()
    assert pushed_card == str(build_model_card(ModelCardFacts.from_folder(tmp_path), "someone/renamed"))
    assert 'repo = "someone/renamed"' in pushed_card and hub_model.repo_id not in pushed_card
    # The card of the folder is the one its facts give: nothing in it was patched in afterwards.
    assert str(build_model_card(ModelCardFacts.from_folder(tmp_path))) == card
    assert (tmp_path / "README.md").read_text() == card  # the folder itself is left as it was


# ------------------------------------------------------------------------------------------------------------
# Loading: a missing folder is named before the Hub is asked; a failed download says why
# ------------------------------------------------------------------------------------------------------------


def test_a_failed_load_names_its_cause_and_a_missing_folder_asks_no_hub(hub_server, hub_model, hub_home, tmp_path):
    env = client_env(hub_server, hub_home())
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    predict = [*CLI, "predict", "--title", "Planning agents", "--model"]
    jobs = {
        "bare name": ([*predict, "nosuchdir"], env),
        "path": ([*predict, tmp_path / "runs" / "model"], env),
        "no such repo": ([*predict, "runs/typo"], env),
        "no such revision": ([*predict, hub_model.repo_id, "--revision", "no-such-branch"], env),
        "offline": ([*predict, "test-user/not-cached"], offline),
        "space offline": (
            [*CLI, "demo", "--model", "test-user/some-model", "--write_space", tmp_path / "space"],
            offline,
        ),
    }
    before = len(hub_server.requests)
    runs = run_side_by_side(jobs)
    lines = {}
    for name, result in runs.items():
        assert result.returncode == 1 and "Traceback" not in result.stderr, (name, result.stderr[-3000:])
        [lines[name]] = [line for line in result.error_lines() if line.startswith("hf-hybrid ")]
    here = ROOT  # where the CLI ran
    assert lines["bare name"] == (
        f"hf-hybrid predict: error: no model folder nosuchdir: {here / 'nosuchdir'} does not exist "
        "(a Hub model is named owner/name)"
    )
    path = tmp_path / "runs" / "model"
    assert lines["path"] == (
        f"hf-hybrid predict: error: no model folder {path}: {path} does not exist (a Hub model is named owner/name)"
    )
    assert lines["no such repo"] == (
        f"hf-hybrid predict: error: no model repo runs/typo on the Hub at {hub_server.url} (a private one needs "
        f"`hf auth login` or HF_TOKEN); there is no folder {here / 'runs' / 'typo'} here either"
    )
    assert lines["no such revision"] == (
        f"hf-hybrid predict: error: the Hub repo {hub_model.repo_id} has no revision 'no-such-branch'"
    )
    assert lines["offline"] == (
        "hf-hybrid predict: error: offline (HF_HUB_OFFLINE is set) and test-user/not-cached is not in the local Hub "
        f"cache; there is no folder {here / 'test-user' / 'not-cached'} here either"
    )
    assert lines["space offline"] == (
        "hf-hybrid demo: error: offline (HF_HUB_OFFLINE is set): the Hub cannot be asked about test-user/some-model; "
        "unset it"
    )
    # The folders and everything offline were refused without a request; the repo ids were asked for.
    asked = [path for _, path in hub_server.requests[before:]]
    assert not [path for path in asked if any(name in path for name in ("nosuchdir", "not-cached", "some-model"))]
    assert any("runs/typo" in path for path in asked) and not any("runs/model" in path for path in asked)
    assert not (tmp_path / "space").exists()


def test_a_connection_failure_is_told_apart_from_an_error_that_is_not_the_hubs():
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from hf_hybrid.hub import hub_failure

    def failed_download():
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except ConnectionRefusedError as refused:
                raise LocalEntryNotFoundError(
                    "An error happened while trying to locate the file on the Hub"
                ) from refused
        except LocalEntryNotFoundError as missing:
            raise OSError("We couldn't connect to the Hub to load the files") from missing

    with pytest.raises(OSError) as download:
        failed_download()
    failure = hub_failure("you/model", None, download.value, cached=True)
    assert str(failure) == (
        f"cannot reach the Hub at {constants.ENDPOINT} for you/model ([Errno 111] Connection refused); "
        f"there is no folder {Path('you/model').resolve()} here either"
    )
    assert hub_failure("you/model", None, PermissionError(13, "Permission denied")) is None
