"""The Gradio demo: what the page shows for a paper (driven in headless Chromium), bad input, a missing Gradio,
and the Hub Space that `hf-hybrid demo --write_space` writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.register_assert_rewrite("hub_fixtures")  # before its import below, so that its asserts explain failures

from hf_hybrid import (  # noqa: E402
    ArxivClassificationPipeline,
    HybridCNNLSTMForSequenceClassification,
    HybridCNNLSTMTokenizer,
)
from hf_hybrid.cli import main  # noqa: E402
from hf_hybrid.demo import EXAMPLES, MAX_FIELD_CHARACTERS, PaperError, explain_paper  # noqa: E402

from fresh_process import without, without_hf_hybrid  # noqa: E402
from hub_fixtures import CLI, client_env, run  # noqa: E402

pytest_plugins = ["hub_fixtures"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Made of the class words of hub_fixtures' cs.CV papers (the tiny model, trained for 2 epochs, may still call it
# something else: the tests compare the page with the pipeline, not with the truth).
VISION_PAPER = {
    "title": "Segmentation and detection of objects in video",
    "abstract": "We propose a convolutional method for segmentation of images and pixels: objects in camera "
    "video scenes are visual, and detection of objects in images improves on visual scenes.",
}


# --- the page's content, without a browser ---


@pytest.fixture(scope="module")
def classify(saved_model_dir):
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(saved_model_dir)
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(saved_model_dir).eval()
    return ArxivClassificationPipeline(model=model, tokenizer=tokenizer)


def test_every_word_is_shown_in_reading_order_with_its_attention(classify):
    paper = {"title": "deep networks deep", "abstract": "attention language models attention"}
    shown = explain_paper(classify, paper["title"], paper["abstract"])
    result = classify(paper, top_words=100)

    assert shown["label"] == result["label"] and shown["scores"] == result["scores"]
    assert shown["fusion_weights"] == result["fusion_weights"]
    for field in ("title", "abstract"):
        words = [word for word, _ in shown[f"{field}_words"]]
        assert words == classify.tokenizer.split_words(paper[field], field)
        by_position = {item["position"]: item["attention"] for item in result[f"{field}_words"]}
        highest = max(by_position.values())
        weights = [weight for _, weight in shown[f"{field}_words"]]
        assert weights == [pytest.approx(by_position[i] / highest, abs=1e-3) for i in range(len(words))]
        assert max(weights) == 1.0
    assert shown["notes"] == []


def test_a_truncated_abstract_or_title_is_noted(classify):
    limit = classify.tokenizer.max_abstract_length
    abstract = " ".join(["attention"] * (limit + 7))
    shown = explain_paper(classify, "deep networks", abstract)
    assert len(shown["abstract_words"]) == limit
    assert shown["notes"] == [
        f"The abstract has {limit + 7} words; the model reads the first {limit}, as it was trained to."
    ]

    title_limit = classify.tokenizer.max_title_length
    shown = explain_paper(classify, " ".join(["deep"] * (title_limit + 1)), "attention")
    assert shown["notes"] == [
        f"The title has {title_limit + 1} words; the model reads the first {title_limit}, as it was trained to."
    ]


@pytest.mark.parametrize(
    "title, abstract, message",
    [
        ("", "", "Give a title, an abstract, or both."),
        ("  ", "\n\t", "Give a title, an abstract, or both."),
        (None, None, "Give a title, an abstract, or both."),
        ("deep networks", "x" * 1_000_000, "The abstract has 1,000,000 characters"),
        ("x" * (MAX_FIELD_CHARACTERS + 1), "", f"The title has {MAX_FIELD_CHARACTERS + 1:,} characters"),
    ],
)
def test_bad_input_is_refused_with_a_message(classify, title, abstract, message):
    with pytest.raises(PaperError, match=message):
        explain_paper(classify, title, abstract)


def test_a_title_alone_is_read_whole_as_the_pipelines_read_it_an_abstract_alone_as_given(classify):
    shown = explain_paper(classify, "Deep networks. Attention models", "")
    assert [word for word, _ in shown["title_words"]] == ["deep", "networks"]
    assert [word for word, _ in shown["abstract_words"]] == ["deep", "networks", "attention", "models"]
    assert shown["scores"] == classify("Deep networks. Attention models")["scores"]
    assert shown["notes"] == [
        "With no abstract, the title is read as a text given alone: its first sentence as the title and all of it "
        "as the abstract."
    ]
    abstract_only = explain_paper(classify, "", "Deep networks. Attention models")
    assert abstract_only["title_words"] == [] and abstract_only["notes"] == []


# --- the command ---


def test_without_gradio_the_command_says_so_in_one_line(saved_model_dir):
    script = without(
        "gradio",
        f"""
        from hf_hybrid.cli import main
        sys.exit(main(["demo", "--model", {str(saved_model_dir)!r}]))
    """,
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "hf-hybrid demo: error: the demo needs Gradio: pip install 'hf-hybrid[demo]' (or: pip install gradio)"
    )


def test_a_space_needs_a_repo_id_not_a_folder(saved_model_dir, tmp_path, capsys):
    assert main(["demo", "--model", str(saved_model_dir), "--write_space", str(tmp_path / "space")]) == 1
    assert "give its repo id" in capsys.readouterr().err
    assert not (tmp_path / "space").exists()


# --- the page in headless Chromium ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_page(url: str, server: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the demo exited ({server.returncode}):\n{server.stderr.read()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the demo did not answer on {url} within {timeout} s")


def open_browser(playwright, profile: Path):
    """Debian's chromium, headless, with a fresh profile: Playwright drives it, it downloads no browser."""
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1280, "height": 1000},
    )


# The page has answered when Gradio's status trackers over the outputs are hidden again and either the scores or
# a message are there (each test submits once, on a fresh page).
ANSWERED = """() => {
    const trackers = [...document.querySelectorAll('[id] > .wrap, [id] .wrap')].filter(e => e.closest(
        '#scores, #fusion, #title_words, #abstract_words, #message'));
    const text = id => document.querySelector('#' + id)?.innerText ?? '';
    return trackers.length > 0 && trackers.every(e => e.classList.contains('hide'))
        && (text('scores').includes('%') || text('message').trim().length > 0);
}"""


# The words of a gr.HighlightedText with their background colour (its opacity is the word's score).
HIGHLIGHTED_WORDS = """selector => [...document.querySelectorAll(selector + ' .score-token')]
    .filter(token => token.innerText.trim())
    .map(token => [token.innerText.trim(), getComputedStyle(token).backgroundColor])"""


def classify_on_page(page, title: str, abstract: str) -> None:
    """Types a paper into the page, submits it and waits until the page has answered."""
    page.locator("#title textarea").fill(title)
    page.locator("#abstract textarea").fill(abstract)
    page.locator("#classify").click()
    page.wait_for_function(ANSWERED, timeout=60_000)


@pytest.fixture(scope="module")
def demo_url(hub_model, tmp_path_factory):
    """`hf-hybrid demo` serving the tiny trained model on a free port of 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [*CLI, "demo", "--model", str(hub_model.folder), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_page(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        # CI installs it (.ci/run) and sets REQUIRE_CHROMIUM, so that a missing browser fails there.
        missing = f"the browser tests drive Debian's chromium, and {CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("REQUIRE_CHROMIUM"):
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = open_browser(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.fixture
def page(browser, demo_url):
    page = browser.new_page()
    page.goto(demo_url)
    page.locator("#classify").wait_for(timeout=60_000)
    yield page
    page.close()


def test_the_page_shows_the_label_the_scores_and_the_attended_words(page, hub_model, tmp_path):
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(hub_model.folder)
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(hub_model.folder).eval()
    expected = ArxivClassificationPipeline(model=model, tokenizer=tokenizer)(VISION_PAPER, top_words=100)

    classify_on_page(page, VISION_PAPER["title"], VISION_PAPER["abstract"])
    page.screenshot(path=tmp_path / "demo.png", full_page=True)

    scores = page.locator("#scores").inner_text()
    assert scores.splitlines()[:2] == ["Category", expected["label"]]  # the predicted label heads the scores
    for label, score in expected["scores"].items():
        assert label in scores and f"{round(100 * score)}%" in scores
    fusion = page.locator("#fusion").inner_text()
    assert "title" in fusion and "abstract" in fusion
    assert f"{round(100 * expected['fusion_weights']['abstract'])}%" in fusion
    for field in ("title", "abstract"):
        # every word the model read, in order, each highlighted as strongly as it was attended
        words = tokenizer.split_words(VISION_PAPER[field], field)
        highlighted = page.evaluate(HIGHLIGHTED_WORDS, f"#{field}_words")
        assert [word for word, _ in highlighted] == words
        attention = {item["position"]: item["attention"] for item in expected[f"{field}_words"]}
        strongest = max(attention, key=attention.get)
        assert highlighted[strongest][1] == "rgb(239, 68, 60)"  # full opacity: the top word
        assert sum(background == "rgb(239, 68, 60)" for _, background in highlighted) == 1
    assert page.locator("#message").inner_text().strip() == ""
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_an_example_paper_is_one_click_away(page):
    from playwright.sync_api import expect

    page.get_by_text(EXAMPLES[1][0]).first.click()
    # The page fills the fields after a round trip to the server: wait for it (slow on a busy machine).
    expect(page.locator("#title textarea")).to_have_value(EXAMPLES[1][0], timeout=60_000)
    expect(page.locator("#abstract textarea")).to_have_value(EXAMPLES[1][1], timeout=60_000)
    page.locator("#classify").click()
    page.wait_for_function(ANSWERED, timeout=60_000)
    assert "%" in page.locator("#scores").inner_text()


def test_an_empty_paper_gets_a_message_on_the_page(page):
    classify_on_page(page, "", "")
    assert page.locator("#message").inner_text().strip() == "Give a title, an abstract, or both."
    assert "%" not in page.locator("#scores").inner_text()


def test_a_megabyte_of_text_gets_a_message_on_the_page(page):
    classify_on_page(page, "Deep networks", "words " * 200_000)
    message = page.locator("#message").inner_text()
    assert "The abstract has 1,199,999 characters" in message
    assert "Traceback" not in page.content()


def test_a_truncated_abstract_is_noted_on_the_page(page, hub_model):
    limit = HybridCNNLSTMTokenizer.from_pretrained(hub_model.folder).max_abstract_length
    classify_on_page(page, "Images", " ".join(["pixels"] * (limit + 3)))
    message = page.locator("#message").inner_text()
    assert f"The abstract has {limit + 3} words; the model reads the first {limit}" in message


# --- the Hub Space ---


def test_the_space_serves_the_pushed_model_without_hf_hybrid(hub_model, hub_server, hub_home, tmp_path):
    space = tmp_path / "space"
    env = client_env(hub_server, hub_home())
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    written = run([*CLI, "demo", "--model", hub_model.repo_id, "--write_space", space], env).check()
    assert written.stdout.strip() == str(space)
    commit = hub_server.revision_sha(hub_model.repo_id)

    assert sorted(p.name for p in space.iterdir()) == ["README.md", "app.py", "arxiv_demo.py", "requirements.txt"]
    readme = (space / "README.md").read_text()
    metadata = readme.split("---")[1]
    assert "sdk: gradio" in metadata and "app_file: app.py" in metadata
    assert f"models:\n  - {hub_model.repo_id}\n" in metadata
    assert f'REVISION = "{commit}"' in (space / "app.py").read_text()
    requirements = (space / "requirements.txt").read_text().split()
    assert {r.split("=")[0].split(">")[0] for r in requirements} == {"gradio", "transformers", "tokenizers", "torch"}

    script = without_hf_hybrid(f"""
        sys.path.insert(0, {str(space)!r})
        import app  # what the Space runs, short of serving the page
        import arxiv_demo
        shown = arxiv_demo.explain_paper(app.classify, {VISION_PAPER["title"]!r}, {VISION_PAPER["abstract"]!r})
        print(json.dumps({{"shown": shown, "page": type(app.demo).__name__, **hf_hybrid_absence()}}))
    """)
    loaded = run([sys.executable, "-c", script], env).check()
    result = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert result["hf_hybrid_refused"] and result["hf_hybrid_modules"] == []
    assert result["page"] == "Blocks"

    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(hub_model.folder)
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(hub_model.folder).eval()
    local = explain_paper(ArxivClassificationPipeline(model=model, tokenizer=tokenizer), **VISION_PAPER)
    assert result["shown"]["label"] == local["label"]
    assert result["shown"]["scores"] == pytest.approx(local["scores"], abs=1e-6)
    assert [w for w, _ in result["shown"]["abstract_words"]] == [w for w, _ in local["abstract_words"]]


def test_a_space_for_a_missing_repo_fails_in_one_line(hub_server, hub_home, tmp_path):
    result = run(
        [*CLI, "demo", "--model", "test-user/no-such-model", "--write_space", tmp_path / "space"],
        client_env(hub_server, hub_home()),
    )
    assert result.returncode == 1
    assert result.error_lines()[0] == (
        f"hf-hybrid demo: error: no model repo test-user/no-such-model on the Hub at {hub_server.url} "
        "(a private one needs `hf auth login` or HF_TOKEN)"
    )
    assert not (tmp_path / "space").exists()
