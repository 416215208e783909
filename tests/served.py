"""`hf-hybrid serve` in a subprocess, for the serving tests: started on a free port of 127.0.0.1, its log collected,
requests sent with `http.client` (one connection each), stopped with SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"serving .* on http://([\d.]+):(\d+) ")


class Served:
    """`hf-hybrid serve --model MODEL --port 0 FLAGS...` in a subprocess (a context manager that stops it)."""

    def __init__(self, model, *flags, env: dict | None = None, timeout: float = 120):
        command = [sys.executable, "-m", "hf_hybrid.cli", "serve", "--model", str(model), "--port", "0"]
        command += [str(flag) for flag in flags]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.address = None
        started = threading.Event()

        def read():
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                if self.address is None and (match := LISTENING.search(line)):
                    self.address = (match[1], int(match[2]))
                    started.set()
            started.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not started.wait(timeout) or self.address is None:
            self.process.kill()
            raise RuntimeError("the server did not start:\n" + "\n".join(self.lines[-30:]))

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=60):
        """(status, headers, body bytes) of one request on a new connection."""
        connection = http.client.HTTPConnection(*self.address, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def post(self, payload, path: str = "/", **kwargs):
        """(status, decoded JSON answer) of `POST path` with `payload` as JSON."""
        status, _, body = self.request("POST", path, json.dumps(payload).encode(), **kwargs)
        return status, json.loads(body)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit status once the server has stopped (and its log has been read to the end)."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout)
        self.reader.join(timeout)
        return status

    def access_lines(self) -> list[str]:
        return [line for line in self.lines if "hf_hybrid.serving.access" in line]


def assert_same_answer(got, expected, where: str = "answer") -> None:
    """The same structure, labels and words; numbers equal up to float32 summation order (the server's folded
    batches against the handler's pipeline)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected), f"{where}: {got} != {expected}"
        for key, value in expected.items():
            assert_same_answer(got[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{where}: {got} != {expected}"
        for index, (mine, theirs) in enumerate(zip(got, expected)):
            assert_same_answer(mine, theirs, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert abs(got - expected) <= 1e-5, f"{where}: {got} != {expected}"
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


def settled_count(lines: list, expected: int | None = None, timeout: float = 30) -> int:
    """How many lines a server's log has once it stops growing (or reaches `expected`): its reader thread takes
    the lines a moment after the server wrote them."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline and count != len(lines):
        count = len(lines)
        if expected is not None and count >= expected:
            time.sleep(0.3)  # one that should not be there would come now
            return len(lines)
        time.sleep(0.3)
    return len(lines)
