"""`hf-hybrid serve`: the handler's answers over HTTP, batched; refusals in one line of JSON; a bounded queue and a
timeout; a graceful SIGTERM; the access log and /metrics; startup failures; the model's Ray Serve deployment."""

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import TINY_ABSTRACTS, TINY_TITLES

from hf_hybrid.cli import main
from hf_hybrid.model.handler import EndpointHandler

from fresh_process import without
from served import Served, assert_same_answer, settled_count

REQUESTS = [
    {"inputs": {"title": TINY_TITLES[0], "abstract": TINY_ABSTRACTS[0]}},
    {"inputs": f"{TINY_TITLES[1]}\n{TINY_ABSTRACTS[1]}"},
    {
        "inputs": [{"title": TINY_TITLES[2], "abstract": TINY_ABSTRACTS[2]}, TINY_TITLES[3], {"abstract": "unseen"}],
        "parameters": {"top_k": 2, "top_words": 3},
    },
    {"inputs": {"title": TINY_TITLES[4]}, "parameters": {"threshold": 0.99}},
    {"inputs": [{"title": "", "abstract": None}], "parameters": {"top_words": 0, "threshold": None}},
]
GOOD = {"inputs": {"title": TINY_TITLES[5], "abstract": TINY_ABSTRACTS[5]}}

# Kinds of malformed request, each with the status and the one-line message it gets.
MALFORMED = [
    (b'{"inputs": ', 400, "the body is not JSON: Expecting value: line 1 column 12 (char 11)"),
    (b"\xff\xfe", 400, "the body is not UTF-8 text"),
    (b"[1, 2]", 400, 'the body must be a JSON object {"inputs": ..., "parameters": ...}, not a list'),
    (b'{"parameters": {}}', 400, "the body has no inputs: give one paper or a list of papers"),
    (b'{"inputs": "t", "options": {}}', 400, "unknown field(s) options: the body holds inputs and parameters"),
    (b'{"inputs": []}', 400, "inputs is an empty list: give at least one paper"),
    (b'{"inputs": 42}', 400, "inputs must be a paper ({'title', 'abstract'} or a text), not a number"),
    (b'{"inputs": ["t", null]}', 400, "inputs[1] must be a paper ({'title', 'abstract'} or a text), not null"),
    (b'{"inputs": {"title": 3}}', 400, "inputs.title must be text, not a number"),
    (b'{"inputs": {}}', 400, "inputs is an empty object: give its title, its abstract or both"),
    (b'{"inputs": {"titel": "t"}}', 400, "inputs has unknown field(s) titel: a paper has a title and an abstract"),
    (b'{"inputs": "t", "parameters": [1]}', 400, "parameters must be an object, not a list"),
    (
        b'{"inputs": "t", "parameters": {"topk": 1}}',
        400,
        "unknown parameter(s) topk: the parameters are top_k, threshold, top_words, allow_empty",
    ),
    (b'{"inputs": "t", "parameters": {"top_k": 9}}', 400, "`top_k` must be a whole number from 1 to 3, got 9"),
    (b'{"inputs": "t", "parameters": {"threshold": 2}}', 400, "`threshold` must be a probability from 0 to 1, got 2"),
    (
        b'{"inputs": "t", "parameters": {"allow_empty": true}}',
        400,
        "`allow_empty` is for multi-label models: a single-label model abstains with `threshold`",
    ),
    (b'{"inputs": "' + b"x" * 3000 + b'"}', 413, "the body is larger than 2000 bytes (Content-Length 3014)"),
]


@pytest.fixture(scope="module")
def server(saved_model_dir):
    with Served(saved_model_dir, "--max_wait_ms", "20", "--max_request_bytes", "2000", "--device", "cpu") as served:
        yield served


@pytest.fixture(scope="module")
def handler(saved_model_dir):
    return EndpointHandler(str(saved_model_dir), device="cpu")


def test_the_server_answers_what_the_handler_answers(server, handler):
    for request in REQUESTS:
        status, answer = server.post(request)
        assert status == 200, answer
        assert_same_answer(answer, handler(json.loads(json.dumps(request))))
    assert server.post(REQUESTS[0], path="/predict") == server.post(REQUESTS[0])
    assert server.request("GET", "/health")[::2] == (200, b"Ok")
    assert server.request("GET", "/")[::2] == (200, b"Ok")


def test_concurrent_requests_are_classified_together_with_their_own_parameters(server, handler):
    requests = [REQUESTS[i % len(REQUESTS)] for i in range(40)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(server.post, requests))
    for request, (status, answer) in zip(requests, answers):
        assert status == 200
        assert_same_answer(answer, handler(json.loads(json.dumps(request))))
    metrics = server.request("GET", "/metrics")[2].decode()
    batches = float(_metric(metrics, "hf_hybrid_batch_size_count"))
    papers = float(_metric(metrics, "hf_hybrid_papers_total"))
    assert batches < papers  # some batches held the papers of several requests


def test_malformed_requests_get_a_4xx_with_one_line_and_the_server_stays_healthy(server):
    before = settled_count(server.lines)  # the log of the requests before this test, read to its end
    for _ in range(100 // len(MALFORMED) + 1):
        for body, status, message in MALFORMED:
            got, headers, answer = server.request("POST", "/", body, {"Content-Type": "application/json"})
            assert got == status, answer
            assert headers["content-type"] == "application/json"
            error = json.loads(answer)["error"]
            assert error.startswith(message) and "\n" not in error
    assert server.request("GET", "/nowhere")[::2] == (404, b'{"error":"Not Found"}')
    assert server.request("PUT", "/")[::2] == (405, b'{"error":"Method Not Allowed"}')
    status, answer = server.post(GOOD)
    assert status == 200 and answer["label"] in ("cs.AI", "cs.CL", "cs.CV")
    assert server.request("GET", "/health")[0] == 200
    sent = (100 // len(MALFORMED) + 1) * len(MALFORMED) + 3
    lines = server.lines[before : settled_count(server.lines, before + sent + 1)]
    assert len(lines) == sent + 1 and all("hf_hybrid.serving.access" in line for line in lines)
    assert any('"POST / HTTP/1.1" 413 ' in line for line in lines)
    assert any('"GET /nowhere HTTP/1.1" 404 ' in line for line in lines)
    metrics = server.request("GET", "/metrics")[2].decode()
    assert float(_metric(metrics, 'hf_hybrid_request_errors_total{reason="too_large"}')) >= 6
    assert float(_metric(metrics, 'hf_hybrid_request_errors_total{reason="invalid_json"}')) >= 12
    assert float(_metric(metrics, 'hf_hybrid_requests_total{code="400"}')) >= 96
    assert "hf_hybrid_request_duration_seconds_bucket" in metrics and "hf_hybrid_queued_papers 0.0" in metrics


def _metric(text: str, name: str) -> str:
    (value,) = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name + " ")]
    return value


def test_a_full_queue_gets_503_with_retry_after_and_a_slow_answer_504(saved_model_dir):
    # A batch waits 1.5 s to fill unless it has 4 papers; the queue holds 4 papers; a request may take 0.5 s.
    flags = ["--max_batch_size", "4", "--max_wait_ms", "1500", "--max_queue", "4", "--request_timeout", "0.5"]
    with Served(saved_model_dir, *flags) as server, ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(server.post, GOOD)
        while _metric(server.request("GET", "/metrics")[2].decode(), "hf_hybrid_queued_papers") != "1.0":
            time.sleep(0.01)
        status, headers, answer = server.request("POST", "/", json.dumps({"inputs": ["a"] * 4}).encode())
        assert (status, headers.get("retry-after")) == (503, "1")
        assert json.loads(answer)["error"] == (
            "the server is busy (1 papers are waiting, the queue holds 4): try again"
        )
        assert waiting.result() == (504, {"error": "no answer within the request timeout (0.5 s)"})
        status, answer = server.post({"inputs": [GOOD["inputs"]] * 4})  # its place is free again; a full batch
        assert status == 200 and len(answer) == 4
        metrics = server.request("GET", "/metrics")[2].decode()
        assert _metric(metrics, 'hf_hybrid_request_errors_total{reason="overloaded"}') == "1.0"
        assert _metric(metrics, 'hf_hybrid_request_errors_total{reason="timeout"}') == "1.0"
        assert server.stop() == 0


def test_sigterm_under_load_answers_every_request_taken_and_exits_0(saved_model_dir, handler):
    expected = handler(json.loads(json.dumps(GOOD)))
    outcomes, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                outcomes.append((*server.post(GOOD, timeout=30), time.monotonic()))
            except ConnectionRefusedError:  # not accepted: the server had stopped listening
                outcomes.append("refused")
                return
            except (ConnectionResetError, http.client.RemoteDisconnected) as error:  # taken or not: see below
                outcomes.append(type(error).__name__)
                return

    with Served(saved_model_dir, "--max_wait_ms", "100") as server:
        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        while sum(isinstance(outcome, tuple) for outcome in outcomes) < 20:
            time.sleep(0.02)
        signalled = time.monotonic()
        status = server.stop()
        stop.set()
        for thread in threads:
            thread.join(60)
    answered = [outcome for outcome in outcomes if isinstance(outcome, tuple)]
    assert status == 0
    for code, answer, _ in answered:
        assert code == 200
        assert_same_answer(answer, expected)
    assert any(when > signalled for _, _, when in answered)  # requests in flight at SIGTERM were answered
    # Every request the server took (it logs each once it has answered it, whatever the answer) got its answer; a
    # connection reset can only be one the kernel had queued and the server had not taken when it stopped listening.
    taken = [line for line in server.access_lines() if '"POST / HTTP/1.1"' in line]
    assert len(taken) == len(answered) and all('HTTP/1.1" 200 ' in line for line in taken)
    assert any("stopped: every request taken was answered" in line for line in server.lines)


def test_a_model_that_cannot_be_loaded_or_a_port_in_use_exits_1_with_one_line(saved_model_dir, tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hf-hybrid serve: error: ")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(saved_model_dir), "--port", str(port)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-hybrid")]
    assert err == [f"hf-hybrid serve: error: cannot listen on 127.0.0.1:{port}: Address already in use"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max_batch_size", "0"], "--max_batch_size must be 1 or more, got 0"),
        (["--request_timeout", "0"], "--request_timeout must be greater than 0, got 0.0"),
        (["--port", "70000"], "--port must be a port number from 0 to 65535, got 70000"),
        (["--device", "cuda"], "--device 'cuda': no CUDA GPU is available here"),
    ],
)
def test_serve_refuses_options_outside_their_meaning(saved_model_dir, flags, message, capsys):
    assert main(["serve", "--model", str(saved_model_dir), *flags]) == 1
    assert capsys.readouterr().err.startswith(f"hf-hybrid serve: error: {message}")


def test_the_ray_serve_deployment_answers_what_the_server_answers(server, saved_model_dir):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    serve = pytest.importorskip("ray.serve", reason="Ray Serve (the ray extra) is not installed")
    from hf_hybrid.serving.ray_serve import APP_NAME, deployment

    with socket.socket() as probe:  # a free port for Serve's HTTP proxy
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        # A local instance, every process of it on loopback.
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = deployment(str(saved_model_dir), num_replicas=2, num_cpus_per_replica=0.5, device="cpu")
        serve.run(app, name=APP_NAME, route_prefix="/")
    except Exception as error:  # a sandbox where Ray cannot start its processes
        ray.shutdown()
        pytest.skip(f"a local Ray Serve instance could not start here: {type(error).__name__}: {error}")
    replicas = Served.__new__(Served)
    replicas.address = ("127.0.0.1", port)
    try:
        for request in REQUESTS:
            assert_same_answer(list(replicas.post(request)), list(server.post(request)))
        for body, _, _ in MALFORMED[:-1]:  # not the oversized body: its limit is the server's own
            if body != b"\xff\xfe":  # not UTF-8: the handler is given what the JSON decoder makes of it
                assert replicas.request("POST", "/", body)[::2] == server.request("POST", "/", body)[::2], body
        assert replicas.request("GET", "/health")[::2] == (200, b"Ok")
    finally:
        serve.shutdown()
        ray.shutdown()


def test_without_the_serve_extra_the_command_says_how_to_install_it(saved_model_dir):
    script = without(
        "fastapi", f"from hf_hybrid.cli import main\nsys.exit(main(['serve', '--model', {str(saved_model_dir)!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "hf-hybrid serve: error: the server needs FastAPI, uvicorn and prometheus_client: pip install "
        "'hf-hybrid[serve]'"
    )
