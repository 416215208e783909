"""Tests of the Hub test double (tests/hub_server.py) driven by the real huggingface_hub/transformers.

Client code runs in a subprocess because huggingface_hub reads HF_ENDPOINT when it is imported.
Each client script prints one JSON line on stdout with what the test asserts on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import HubServer, git_blob_sha  # noqa: E402


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server
        # A request the double does not implement means the double (or a test) needs fixing.
        assert server.unhandled == [], f"client hit endpoints the double lacks: {server.unhandled}"


def run_client(hub: HubServer, hf_home, code: str, token: str | bool = True) -> dict:
    """Run `code` with the real client pointed at `hub`; return the JSON it printed last."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=hub.client_env(hf_home, token=token),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"client failed:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_upload_folder_then_snapshot_download_gives_identical_bytes(hub, tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    expected = {
        "config.json": b'{"hidden_size": 8}',
        "weights.bin": os.urandom(100_000),
        "sub/notes.txt": b"hello from a subfolder\n",
    }
    for name, data in expected.items():
        (folder / name).write_bytes(data)

    out = run_client(
        hub,
        tmp_path / "hf",
        f"""
        import json, os
        from huggingface_hub import HfApi, snapshot_download
        api = HfApi()
        url = api.create_repo("test-user/roundtrip")
        commit = api.upload_folder(repo_id="test-user/roundtrip", folder_path={str(folder)!r})
        path = snapshot_download("test-user/roundtrip")
        files = {{os.path.relpath(os.path.join(d, f), path): os.path.join(d, f)
                  for d, _, names in os.walk(path) for f in names}}
        info = api.model_info("test-user/roundtrip")
        print(json.dumps({{"url": url, "repo_id": url.repo_id, "commit": commit.oid, "files": files,
                          "listed": api.list_repo_files("test-user/roundtrip"),
                          "sha": info.sha, "siblings": [s.rfilename for s in info.siblings]}}))
    """,
    )

    assert out["repo_id"] == "test-user/roundtrip"
    assert out["url"] == f"{hub.url}/test-user/roundtrip"
    assert out["sha"] == out["commit"] == hub.revision_sha("test-user/roundtrip")
    downloaded = {name: open(path, "rb").read() for name, path in out["files"].items()}
    assert downloaded.pop(".gitattributes")  # the Hub seeds every repo with one
    assert downloaded == expected
    assert sorted(out["listed"]) == sorted(out["siblings"]) == sorted([".gitattributes", *expected])
    assert {k: v for k, v in hub.files("test-user/roundtrip").items() if k != ".gitattributes"} == expected


def test_missing_file_repo_and_revision_raise_the_client_errors(hub, tmp_path):
    out = run_client(
        hub,
        tmp_path / "hf",
        """
        import json
        from huggingface_hub import HfApi, hf_hub_download
        HfApi().create_repo("test-user/present")
        def error_of(**kwargs):
            try:
                hf_hub_download(**kwargs)
            except Exception as e:  # names of the class and its bases: the client raises subclasses
                return [c.__name__ for c in type(e).__mro__]
        print(json.dumps({
            "missing_file": error_of(repo_id="test-user/present", filename="nope.json"),
            "missing_repo": error_of(repo_id="test-user/absent", filename="config.json"),
            "missing_revision": error_of(repo_id="test-user/present", filename=".gitattributes", revision="v9"),
        }))
    """,
    )
    assert "EntryNotFoundError" in out["missing_file"]
    assert "RepositoryNotFoundError" in out["missing_repo"]
    assert "RevisionNotFoundError" in out["missing_revision"]


def test_branch_upload_and_download_pinned_to_an_old_commit(hub, tmp_path):
    out = run_client(
        hub,
        tmp_path / "hf",
        """
        import json
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        api.create_repo("test-user/branchy")
        api.create_branch("test-user/branchy", branch="dev")
        old = api.upload_file(path_or_fileobj=b"v1", path_in_repo="w.txt", repo_id="test-user/branchy", revision="dev")
        new = api.upload_file(path_or_fileobj=b"v2", path_in_repo="w.txt", repo_id="test-user/branchy", revision="dev")
        read = lambda rev: open(hf_hub_download("test-user/branchy", "w.txt", revision=rev), "rb").read().decode()
        try:
            hf_hub_download("test-user/branchy", "w.txt")  # main never got the file
            on_main = "found"
        except Exception as e:
            on_main = [c.__name__ for c in type(e).__mro__]
        print(json.dumps({"old": old.oid, "new": new.oid, "at_old": read(old.oid), "at_dev": read("dev"),
                          "at_new": read(new.oid), "on_main": on_main,
                          "branches": sorted(b.name for b in api.list_repo_refs("test-user/branchy").branches),
                          "dev_files": api.list_repo_files("test-user/branchy", revision="dev")}))
    """,
    )
    assert out["old"] != out["new"] and len(out["old"]) == 40
    assert (out["at_old"], out["at_new"], out["at_dev"]) == ("v1", "v2", "v2")
    assert "EntryNotFoundError" in out["on_main"]
    assert out["branches"] == ["dev", "main"]
    assert sorted(out["dev_files"]) == [".gitattributes", "w.txt"]
    assert hub.files("test-user/branchy", revision=out["old"])["w.txt"] == b"v1"
    assert hub.revision_sha("test-user/branchy", "dev") == out["new"]


def test_whoami_accepts_the_token_and_rejects_a_wrong_one(hub, tmp_path):
    code = """
        import json
        from huggingface_hub import HfApi
        try:
            result = HfApi().whoami()["name"]
        except Exception as e:
            result = [type(e).__name__, e.response.status_code]
        print(json.dumps(result))
    """
    assert run_client(hub, tmp_path / "hf", code) == "test-user"
    assert run_client(hub, tmp_path / "hf", code, token="hf_wrong") == ["HfHubHTTPError", 401]


def test_private_repo_needs_the_token(hub, tmp_path):
    run_client(
        hub,
        tmp_path / "hf",
        """
        from huggingface_hub import HfApi
        HfApi().create_repo("test-user/secret", private=True)
        HfApi().upload_file(path_or_fileobj=b"s", path_in_repo="s.txt", repo_id="test-user/secret")
        print("{}")
    """,
    )
    out = run_client(
        hub,
        tmp_path / "hf",
        """
        import json
        from huggingface_hub import hf_hub_download, model_info
        def outcome(fn):
            try:
                return open(fn(), "rb").read().decode() if fn is not model_info else fn().private
            except Exception as e:
                return type(e).__name__
        print(json.dumps({
            "anonymous": outcome(lambda: hf_hub_download("test-user/secret", "s.txt", token=False)),
            "with_token": outcome(lambda: hf_hub_download("test-user/secret", "s.txt")),
            "private": model_info("test-user/secret").private,
        }))
    """,
    )
    assert out == {"anonymous": "RepositoryNotFoundError", "with_token": "s", "private": True}


def test_offline_hub_makes_the_client_fail_or_fall_back_to_its_cache(hub, tmp_path):
    hf_home = tmp_path / "hf"
    run_client(
        hub,
        hf_home,
        """
        from huggingface_hub import HfApi, hf_hub_download
        HfApi().create_repo("test-user/cached")
        HfApi().upload_file(path_or_fileobj=b"cached!", path_in_repo="c.txt", repo_id="test-user/cached")
        hf_hub_download("test-user/cached", "c.txt")  # fills the cache under HF_HOME
        print("{}")
    """,
    )
    hub.set_offline(True)
    before = len(hub.requests)
    out = run_client(
        hub,
        hf_home,
        """
        import json
        from huggingface_hub import hf_hub_download, model_info
        try:
            model_info("test-user/cached")
            info = "ok"
        except Exception as e:
            info = [type(e).__name__, e.response.status_code]
        cached = open(hf_hub_download("test-user/cached", "c.txt"), "rb").read().decode()
        print(json.dumps({"info": info, "cached": cached}))
    """,
    )
    assert out == {"info": ["HfHubHTTPError", 503], "cached": "cached!"}
    assert len(hub.requests) > before  # the client did try the (down) server
    hub.set_offline(False)


def test_transformers_push_to_hub_then_from_pretrained(hub, tmp_path):
    out = run_client(
        hub,
        tmp_path / "hf",
        """
        import json
        from transformers import AutoConfig, BertConfig
        config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
        commit = config.push_to_hub("test-user/tiny-bert")
        loaded = AutoConfig.from_pretrained("test-user/tiny-bert")
        pinned = AutoConfig.from_pretrained("test-user/tiny-bert", revision=commit.oid)
        print(json.dumps({"pushed": config.to_dict(), "loaded": loaded.to_dict(), "pinned": pinned.to_dict(),
                          "type": type(loaded).__name__, "hidden_size": loaded.hidden_size}))
    """,
    )
    for config in out["loaded"], out["pinned"], out["pushed"]:
        config.pop("_name_or_path")  # records where a config was loaded from, so it differs by design
    assert out["loaded"] == out["pinned"] == out["pushed"]
    assert (out["type"], out["hidden_size"]) == ("BertConfig", 32)
    files = hub.files("test-user/tiny-bert")
    assert {"config.json", "README.md"} <= set(files)
    assert json.loads(files["config.json"])["intermediate_size"] == 37
    assert git_blob_sha(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's id of the empty blob
