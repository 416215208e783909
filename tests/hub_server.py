"""A Hugging Face Hub test double: a tiny HTTP server that speaks enough of the Hub protocol
for the *real* ``huggingface_hub`` client (and ``transformers``' ``from_pretrained`` /
``push_to_hub``) to run end to end against it, with no internet and no mocks.

It is a test double, not a Hub: one user (who may write to any namespace), one token, everything
kept in memory. Not implemented: LFS/Xet storage (``lfsFile`` commit entries get 400), pull
requests (``create_pr=True`` gets 501), tags, discussions, gating, rate limits, pagination.
Like the Hub, every new repo starts with a commit holding a ``.gitattributes`` file.

What it implements (``{type}`` is ``models``, ``datasets`` or ``spaces``):

* ``GET  /api/whoami-v2``                        Bearer-token check (401 + JSON error otherwise)
* ``POST /api/repos/create`` / ``/api/repos/delete``
* ``POST /api/validate-yaml``                    accepts every README
* ``GET  /api/{type}/{ns}/{name}[/revision/{rev}]``  repo info (id, sha, siblings, private...)
* ``GET  /api/{type}/{ns}/{name}/tree/{rev}[/{path}]`` (``recursive``), ``POST .../paths-info/{rev}``
* ``GET  /api/{type}/{ns}/{name}/refs``, ``GET .../commits/{rev}``
* ``POST /api/{type}/{ns}/{name}/preupload/{rev}``  answers "regular" for every file, so the client
  sends contents base64-encoded inside the commit and never needs LFS or Xet
* ``POST /api/{type}/{ns}/{name}/commit/{rev}``    NDJSON: header, file, deletedFile, deletedFolder
* ``POST|DELETE /api/{type}/{ns}/{name}/branch/{branch}``
* ``HEAD|GET /[{type}/]{ns}/{name}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` (git blob
  sha1, like the Hub for non-LFS files), ``Content-Length`` and single ``Range`` support.

Every commit keeps a full snapshot of the repo, so a revision may be a branch name or any
full 40-hex commit sha. Errors carry the Hub's ``X-Error-Code`` header (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``) which the client maps to its exception classes.
Private repos answer 401 ``RepoNotFound`` to anonymous callers; a request that sends a
wrong token gets 401 "Invalid credentials in Authorization header" (as the Hub does, even
for public repos). ``set_offline(True)`` answers 503 to everything. Requests the double does
not know are answered 501, printed to stderr and kept in ``HubServer.unhandled``.

``huggingface_hub`` reads ``HF_ENDPOINT`` at import time: run client code in a subprocess
whose environment comes from ``HubServer.client_env()``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# The Hub seeds every new repo with a .gitattributes commit; keep that so listings look real.
GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha(data: bytes) -> str:
    """The git object id of a blob: what the Hub uses as ETag/oid for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, bytes]  # full snapshot of the repo at this commit


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision, revision)
        return self.commits.get(sha)


class HubError(Exception):
    """Raised inside handlers; turned into a JSON error response with Hub headers."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.commit, self.extra = status, message, code, commit, extra


class HubServer:
    """In-memory Hub double served on 127.0.0.1 from a daemon thread. Use as a context manager."""

    def __init__(self, token: str = "hf_test_token", user: str = "test-user"):
        self.token = token
        self.user = user
        self.url = ""
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.unhandled: list[tuple[str, str]] = []  # requests no route matched
        self._repos: dict[tuple[str, str], Repo] = {}
        self._lock = threading.RLock()
        self._offline = False
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle / test API
    def start(self) -> HubServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # handlers reach the store through self.server.hub
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # A short poll interval keeps stop() fast (shutdown waits for the serve loop to notice).
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="HubServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_offline(self, flag: bool) -> None:
        """While True, every request is answered 503 (the Hub is "down").

        The client retries 5xx with backoff (about 23 s in all) before giving up on a file it has
        not cached; model_info/repo_info and files already in the cache fail or fall back at once.
        """
        self._offline = flag

    def client_env(self, hf_home: str | os.PathLike, token: str | bool = True) -> dict[str, str]:
        """Environment for a client subprocess: this server as endpoint, an isolated cache, no Xet.

        ``token``: True sends this server's token, False none (anonymous), a string that token.
        Inherited HF_*/HUGGINGFACE_*/TRANSFORMERS_* variables are dropped (an HF_HUB_OFFLINE=1 or
        HF_HUB_CACHE from the outer environment would otherwise defeat the double).
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
        if token is not False:
            env["HF_TOKEN"] = self.token if token is True else token
        env.update(
            HF_ENDPOINT=self.url,
            HF_HOME=str(hf_home),
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_UPDATE_CHECK="1",
        )
        return env

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """Snapshot of a repo at a branch or commit sha (KeyError if either is unknown)."""
        with self._lock:
            commit = self._repos[(repo_type, repo_id)].resolve(revision)
            if commit is None:
                raise KeyError(revision)
            return dict(commit.files)

    def revision_sha(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """Commit sha a branch points to (KeyError if the repo or branch is unknown)."""
        with self._lock:
            return self._repos[(repo_type, repo_id)].branches[revision]

    # ----------------------------------------------------------------- repo store helpers
    def _repo(self, repo_type: str, repo_id: str, auth: bool | None, write: bool = False) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if write and not auth:
            raise HubError(401, "You must be authenticated to write to a repo")
        if repo is None or (repo.private and not auth):
            # Like the Hub, do not reveal whether a private repo exists.
            raise HubError(401 if not auth else 404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, branch: str, files: dict[str, bytes], title: str, message: str = "") -> Commit:
        parent = repo.branches.get(branch)
        seed = json.dumps([parent, title, time.time_ns(), sorted((p, git_blob_sha(d)) for p, d in files.items())])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, message, _now(), files)
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        return commit

    def _revision(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the client expects; every response sets Content-Length

    def log_message(self, format, *args):  # noqa: A002 - quiet: requests are recorded in hub.requests
        pass

    # --------------------------------------------------------------- plumbing
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status: int = 200) -> bool:
        self._send(status, json.dumps(data).encode())
        return True  # routes return True when they handled the request

    def _dispatch(self, method: str):
        hub = self.server.hub
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = self._read_body()  # always drain it so keep-alive connections stay in sync
        hub.requests.append((method, url.path))
        try:
            if hub._offline:
                raise HubError(503, "Hub is offline (HubServer.set_offline)")
            auth = self.headers.get("Authorization")
            self.authed = auth == f"Bearer {hub.token}"
            if auth and not self.authed:
                self._send(
                    401,
                    b'{"error":"Invalid credentials in Authorization header"}',
                    {"X-Error-Message": "Invalid credentials in Authorization header"},
                )
                return
            # Split before unquoting: a revision like "refs%2Fpr%2F1" is one segment.
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            with hub._lock:
                if not self._route(method, parts):
                    hub.unhandled.append((method, url.path))
                    print(f"HubServer: unhandled request {method} {self.path}", file=sys.stderr)
                    raise HubError(501, f"HubServer does not implement {method} {url.path}")
        except Exception as err:  # a bug in the double: answer 500, print it, make the fixture fail
            if not isinstance(err, HubError):
                traceback.print_exc()
                hub.unhandled.append((method, f"{url.path} (server error: {err!r})"))
                err = HubError(500, f"HubServer crashed: {err!r}")
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            if err.commit:
                headers["X-Repo-Commit"] = err.commit
            self._send(err.status, json.dumps({"error": err.message, **err.extra}).encode(), headers)

    def _route(self, method: str, parts: list[str]) -> bool:
        if parts[0] == "api":
            if parts[1:] == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if parts[1:] == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if parts[1:] == ["repos", "delete"] and method in ("POST", "DELETE"):
                return self._delete_repo()
            if parts[1:] == ["validate-yaml"] and method == "POST":
                return self._json({"errors": [], "warnings": []})
            if len(parts) >= 4 and parts[1] in REPO_TYPES:
                # Every POST/DELETE under a repo writes, except paths-info (a read sent as a form POST).
                writes = method in ("POST", "DELETE") and parts[4:5] != ["paths-info"]
                repo = self.server.hub._repo(REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", self.authed, writes)
                return self._repo_api(method, repo, parts[4:])
            return False
        # File download: [datasets|spaces/]ns/name/resolve/rev/path...
        repo_type = "model"
        if parts[0] in REPO_TYPES and parts[0] != "models":
            repo_type, parts = REPO_TYPES[parts[0]], parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            repo = self.server.hub._repo(repo_type, f"{parts[0]}/{parts[1]}", self.authed)
            return self._resolve(repo, parts[3], "/".join(parts[4:]))
        return False

    # --------------------------------------------------------------- account / repo lifecycle
    def _whoami(self):
        if not self.authed:
            raise HubError(401, "Invalid credentials in Authorization header")
        hub = self.server.hub
        return self._json(
            {
                "type": "user",
                "name": hub.user,
                "fullname": hub.user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        )

    def _create_repo(self):
        if not self.authed:
            raise HubError(401, "You must be authenticated to create a repo")
        hub, body = self.server.hub, json.loads(self.body or b"{}")
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or hub.user}/{body['name']}"
        url = f"{hub.url}/{URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in hub._repos:
            # With exist_ok the client swallows the 409 and still reads "url" from this body.
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        private = body.get("private", body.get("visibility") == "private") or False
        repo = hub._repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, bool(private), _now())
        hub._commit(repo, "main", {".gitattributes": GITATTRIBUTES}, "initial commit")
        return self._json({"url": url, "name": repo_id})

    def _delete_repo(self):
        body = json.loads(self.body or b"{}")
        key = (body.get("type") or "model", f"{body.get('organization') or self.server.hub.user}/{body['name']}")
        if not self.authed or key not in self.server.hub._repos:
            raise HubError(404, "Repository not found", "RepoNotFound")
        del self.server.hub._repos[key]
        return self._json({})

    # --------------------------------------------------------------- per-repo API
    def _repo_api(self, method: str, repo: Repo, rest: list[str]) -> bool:
        hub = self.server.hub
        action, args = (rest[0], rest[1:]) if rest else (None, [])
        if method == "GET" and (action is None or (action == "revision" and len(args) == 1)):
            return self._repo_info(repo, hub._revision(repo, args[0] if args else "main"))
        if method == "GET" and action == "tree" and args:
            return self._tree(hub._revision(repo, args[0]), "/".join(args[1:]))
        if method == "POST" and action == "paths-info" and len(args) == 1:
            return self._paths_info(hub._revision(repo, args[0]))
        if method == "GET" and action == "refs":
            refs = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()]
            return self._json({"branches": refs, "converts": [], "tags": [], "pullRequests": []})
        if method == "GET" and action == "commits" and len(args) == 1:
            return self._commits(repo, hub._revision(repo, args[0]))
        if method == "POST" and action == "preupload" and len(args) == 1:
            return self._preupload(repo, args[0])
        if method == "POST" and action == "commit" and len(args) == 1:
            return self._commit(repo, args[0])
        if action == "branch" and len(args) == 1:
            return self._branch(method, repo, args[0])
        return False

    def _repo_info(self, repo: Repo, commit: Commit):
        hub = self.server.hub
        files = sorted(commit.files.items())
        siblings = [{"rfilename": path, "size": len(data), "blobId": git_blob_sha(data)} for path, data in files]
        return self._json(
            {
                "_id": repo.repo_id,
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.sha,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum(map(len, commit.files.values())),
                "url": f"{hub.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}",
            }
        )

    @staticmethod
    def _entry(commit: Commit, path: str) -> dict | None:
        """Tree entry for a file or folder at `path` in `commit`, None if it does not exist."""
        if path in commit.files:
            data = commit.files[path]
            return {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)}
        inside = sorted(p for p in commit.files if p.startswith(path + "/"))
        if not inside:
            return None
        tree_id = hashlib.sha1("".join(p + git_blob_sha(commit.files[p]) for p in inside).encode()).hexdigest()
        return {"type": "directory", "path": path, "size": 0, "oid": tree_id}

    def _tree(self, commit: Commit, folder: str):
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        if prefix and self._entry(commit, prefix[:-1]) is None:
            raise HubError(404, f"{folder} does not exist", "EntryNotFound", commit.sha)
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        paths: set[str] = set()
        for path in commit.files:
            if not path.startswith(prefix):
                continue
            pieces = path[len(prefix) :].split("/")
            # Each folder on the way is listed too (the Hub lists folders before their content).
            depth = len(pieces) if recursive else 1
            paths.update(prefix + "/".join(pieces[: i + 1]) for i in range(depth))
        entries = [self._entry(commit, p) for p in paths]
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        return self._json(entries)

    def _paths_info(self, commit: Commit):
        if "json" in (self.headers.get("Content-Type") or ""):
            paths = json.loads(self.body).get("paths", [])
        else:  # the client sends a form: paths=a&paths=b&expand=False
            paths = parse_qs(self.body.decode()).get("paths", [])
        entries = [e for e in (self._entry(commit, p.strip("/")) for p in paths) if e is not None]
        return self._json(entries)

    def _commits(self, repo: Repo, commit: Commit | None):
        history = []
        while commit is not None:
            history.append(
                {
                    "id": commit.sha,
                    "title": commit.title,
                    "message": commit.message,
                    "date": commit.date,
                    "authors": [{"user": self.server.hub.user}],
                }
            )
            commit = repo.commits.get(commit.parent) if commit.parent else None
        return self._json(history)

    def _preupload(self, repo: Repo, revision: str):
        commit = repo.resolve(revision)
        existing = commit.files if commit else {}
        files = json.loads(self.body).get("files", [])
        # "regular" for everything: contents come inline in the commit, no LFS/Xet round trip.
        # The oid lets the client skip files that did not change, like the real Hub.
        return self._json(
            {
                "files": [
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": git_blob_sha(existing[f["path"]]) if f["path"] in existing else None,
                    }
                    for f in files
                ]
            }
        )

    def _commit(self, repo: Repo, branch: str):
        hub = self.server.hub
        if "1" in self.query.get("create_pr", []):
            raise HubError(501, "HubServer does not implement pull requests (create_pr=True)")
        if branch not in repo.branches:
            code = None if SHA_RE.match(branch) else "RevisionNotFound"
            raise HubError(400 if code is None else 404, f"Cannot commit to {branch}: not a branch", code)
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        head = repo.branches[branch]
        if header.get("parentCommit") not in (None, head):
            raise HubError(412, f"parentCommit {header['parentCommit']} is not the head of {branch} ({head})")
        files = dict(repo.commits[head].files)
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                folder = value["path"].strip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(folder)}
            elif key != "header":  # lfsFile: never requested since preupload says "regular"
                raise HubError(400, f"HubServer does not support commit entries of kind {key!r}")
        commit = hub._commit(repo, branch, files, header.get("summary", ""), header.get("description", ""))
        return self._json(
            {
                "success": True,
                "commitOid": commit.sha,
                "pullRequestUrl": None,
                "commitUrl": f"{hub.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.sha}",
            }
        )

    def _branch(self, method: str, repo: Repo, branch: str):
        if method == "DELETE":
            if repo.branches.pop(branch, None) is None:
                raise HubError(404, f"Branch {branch} not found", "RevisionNotFound")
            return self._json({})
        if method != "POST":
            return False
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = json.loads(self.body or b"{}").get("startingPoint") or "main"
        repo.branches[branch] = self.server.hub._revision(repo, start).sha
        return self._json({})

    # --------------------------------------------------------------- downloads
    def _resolve(self, repo: Repo, revision: str, path: str):
        commit = self.server.hub._revision(repo, revision)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit.sha)
        data = commit.files[path]
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{git_blob_sha(data)}"', "Accept-Ranges": "bytes"}
        status, body = 200, data
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match:  # resumed downloads ask for the rest of the file
            start = int(match[1])
            end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(status, body, headers, ctype="application/octet-stream")
        return True
