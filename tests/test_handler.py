"""The Inference Endpoints handler (`handler.py`) of a pushed repo: downloaded from the Hub test server and run as the
Inference Toolkit runs it, in a fresh process without hf-hybrid, it answers what `hf-hybrid serve` answers."""

import json
import sys

import pytest

pytest.register_assert_rewrite("hub_fixtures")  # before its import below, so that its asserts explain failures

from fresh_process import without_hf_hybrid  # noqa: E402
from hub_fixtures import client_env, run  # noqa: E402
from served import Served, assert_same_answer  # noqa: E402

pytest_plugins = ["hub_fixtures"]

REQUESTS = [
    {"inputs": {"title": "Planning agents with symbolic search", "abstract": "We propose reasoning over knowledge."}},
    {"inputs": "Segmentation of video scenes\nDetection of objects in camera images with pixels."},
    {
        "inputs": [
            {"title": "Translation of dialogue", "abstract": "A corpus of sentences and parsing of words."},
            {"abstract": "Reward policy logic"},
            "",
        ],
        "parameters": {"top_k": 2, "top_words": 2, "threshold": 0.6},
    },
    {"inputs": {"title": "Agents"}, "parameters": {"top_words": 0}},
    {"inputs": [], "parameters": {}},
    {"inputs": {"title": "Agents"}, "parameters": {"top_k": 4}},
]

# As the Inference Toolkit does (huggingface_inference_toolkit/utils.py, check_and_register_custom_pipeline_from_
# directory): the repo downloaded into a folder, its handler.py imported from the file with the folder on sys.path,
# EndpointHandler(model_dir) built once and called with each request's body; an exception is a 400 with its message.
TOOLKIT = without_hf_hybrid(
    """
    import importlib.util
    from huggingface_hub import snapshot_download

    folder = snapshot_download(sys.argv[1])
    spec = importlib.util.spec_from_file_location("handler.EndpointHandler", f"{folder}/handler.py")
    sys.path.insert(0, folder)
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler.EndpointHandler"] = module
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(folder)
    answers = []
    for body in json.loads(sys.argv[2]):
        try:
            answers.append([200, handler(body)])
        except Exception as error:
            answers.append([400, {"error": str(error)}])
    print(json.dumps({"answers": answers, "device": str(handler.device), **hf_hybrid_absence()}))
    """
)


def test_the_pushed_handler_answers_like_hf_hybrid_serve_without_hf_hybrid(hub_server, hub_home, hub_model):
    fresh = run(
        [sys.executable, "-c", TOOLKIT, hub_model.repo_id, json.dumps(REQUESTS)], client_env(hub_server, hub_home())
    )
    result = json.loads(fresh.check().stdout.strip().splitlines()[-1])
    assert result["hf_hybrid_refused"] and result["hf_hybrid_modules"] == []
    assert result["device"] == "cpu"
    with Served(hub_model.folder) as server:
        served = [list(server.post(request)) for request in REQUESTS]
    assert [status for status, _ in result["answers"]] == [200, 200, 200, 200, 400, 400]
    assert result["answers"][4:] == [
        [400, {"error": "inputs is an empty list: give at least one paper"}],
        [400, {"error": "`top_k` must be a whole number from 1 to 3, got 4"}],
    ]
    assert_same_answer(served, result["answers"])
    assert {"label", "scores", "top_labels", "needs_review", "branch_scores"} <= set(result["answers"][2][1][0])
