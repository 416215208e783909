"""The HTTP application of `hf-hybrid serve` (FastAPI): the Inference Endpoints contract, batched.

Routes, as the Hugging Face Inference Toolkit has them: `POST /` (and `/predict`) classifies the papers of a body
`{"inputs": ..., "parameters": {...}}` (read by the model's own `handler.read_request`, so that it answers exactly
what `handler.py` answers), `GET /` and `/health` answer `Ok`, `GET /metrics` the Prometheus metrics. Every refusal is
a 4xx with one line of JSON, `{"error": "..."}`: a malformed body 400, an oversized one 413, a full queue 503 with
`Retry-After`; a request not answered within the timeout gets 504. Each request gets one access log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from ..bulk import BulkClassifier
from ..model.handler import read_request
from ..model.pipeline_arxiv_classification import check_options
from .batching import Batcher, Job, Overloaded
from .metrics import ServerMetrics

logger = logging.getLogger(__name__)
access_log = logging.getLogger("hf_hybrid.serving.access")

PREDICT_ROUTES = ("/", "/predict")
# A client told the queue is full tries again after this many seconds.
RETRY_AFTER_S = 1
# Classifiers kept for sets of parameters (top_words, top_k, ...) seen lately; each shares the model.
CLASSIFIERS_KEPT = 8


@dataclass
class ServeSettings:
    """How `hf-hybrid serve` takes load (each a flag of it)."""

    max_batch_size: int = 64
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    max_request_bytes: int = 1_000_000
    request_timeout: float = 30.0


class PaperClassifier:
    """The model's side of the server: classifies a batch of jobs, those with the same parameters together, with a
    `BulkClassifier` (batched tokenization, papers of similar length together) for each set of parameters."""

    def __init__(self, model, tokenizer, batch_size: int):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.classifiers: OrderedDict[tuple, BulkClassifier] = OrderedDict()

    def __call__(self, jobs: list[Job]) -> list[list[dict]]:
        groups: dict[tuple, list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault(self._key(job.options), []).append(index)
        results: list[list[dict]] = [[] for _ in jobs]
        for key, indices in groups.items():
            papers = [paper for index in indices for paper in jobs[index].papers]
            records = self._classifier(key)([p["title"] for p in papers], [p["abstract"] for p in papers])
            start = 0
            for index in indices:
                count = len(jobs[index].papers)
                results[index] = records[start : start + count]
                start += count
        return results

    @staticmethod
    def _key(options: dict) -> tuple:
        return (
            options.get("top_words", 5),
            options.get("top_k"),
            options.get("threshold"),
            options.get("allow_empty", False),
        )

    def _classifier(self, key: tuple) -> BulkClassifier:
        if key in self.classifiers:
            self.classifiers.move_to_end(key)
        else:
            top_words, top_k, threshold, allow_empty = key
            self.classifiers[key] = BulkClassifier(
                self.model,
                self.tokenizer,
                batch_size=self.batch_size,
                top_words=top_words,
                top_k=top_k,
                threshold=threshold,
                allow_empty=allow_empty,
            )
            if len(self.classifiers) > CLASSIFIERS_KEPT:
                self.classifiers.popitem(last=False)
        return self.classifiers[key]


class RequestError(Exception):
    """A request answered with an error: its HTTP status, one-line message and reason (a metrics label)."""

    def __init__(self, status: int, message: str, reason: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.reason, self.headers = status, reason, headers


def create_app(model, tokenizer, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving `model` (in eval mode, on its device; fold it first on CPU) and `tokenizer`."""
    settings = settings or ServeSettings()
    metrics = ServerMetrics(settings.max_batch_size)
    batcher = Batcher(
        PaperClassifier(model, tokenizer, settings.max_batch_size),
        max_batch_size=settings.max_batch_size,
        max_wait=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue,
        on_batch=metrics.batch,
    )
    metrics.queued.set_function(lambda: batcher.waiting_papers)  # read when /metrics is

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="hf-hybrid", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(AccessLog, metrics=metrics)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):  # unknown routes and methods: one line of JSON
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    async def health(request: Request):
        return PlainTextResponse("Ok")

    async def metrics_text(request: Request):
        return Response(metrics.text(), media_type=metrics.content_type)

    async def predict(request: Request):
        try:
            data = await read_json(request, settings.max_request_bytes)
            try:
                papers, single, options = read_request(data)
                check_options(model.config, **options)
            except ValueError as error:
                raise RequestError(400, str(error), "invalid_request") from error
            request.state.papers = len(papers)
            try:
                records = await asyncio.wait_for(batcher.classify(papers, options), settings.request_timeout)
            except Overloaded as error:
                headers = {"Retry-After": str(RETRY_AFTER_S)}
                raise RequestError(503, f"the server is busy ({error}): try again", "overloaded", headers) from error
            except asyncio.TimeoutError as error:
                message = f"no answer within the request timeout ({settings.request_timeout:g} s)"
                raise RequestError(504, message, "timeout") from error
        except RequestError as error:
            request.state.error_reason = error.reason
            return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)
        except Exception as error:  # a bug: the traceback goes to the log, the client gets one line
            logger.exception("classifying a request failed")
            request.state.error_reason = "internal"
            message = (
                f"internal error: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
            )
            return JSONResponse({"error": message}, status_code=500)
        return Response(json.dumps(records[0] if single else records), media_type="application/json")

    # Plain routes: the endpoints read the request themselves, so FastAPI's parameter resolution would be time spent
    # on every request for nothing.
    for path in ("/", "/health"):
        app.add_route(path, health, methods=["GET"], include_in_schema=False)
    for path in PREDICT_ROUTES:
        app.add_route(path, predict, methods=["POST"], include_in_schema=False)
    app.add_route("/metrics", metrics_text, methods=["GET"], include_in_schema=False)
    return app


async def read_json(request: Request, max_bytes: int):
    """The request's body as JSON, read up to `max_bytes` (a longer one is refused before it is read whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise RequestError(413, f"the body is larger than {max_bytes} bytes (Content-Length {declared})", "too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(413, f"the body is larger than {max_bytes} bytes", "too_large")
    try:
        text = body.decode("utf-8")  # JSON's own encoding: json.loads would guess others from the first bytes
    except UnicodeDecodeError as error:
        raise RequestError(400, f"the body is not UTF-8 text: {error}", "invalid_json") from error
    try:
        return json.loads(text)
    except ValueError as error:
        raise RequestError(400, f"the body is not JSON: {error}", "invalid_json") from error


class AccessLog:
    """ASGI middleware: one access log line per request (client, request line, status, milliseconds, papers:
    `127.0.0.1:52186 "POST / HTTP/1.1" 200 40.1 ms papers=1`) and the request metrics of classification requests."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_with_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            seconds = time.perf_counter() - started
            state = scope.get("state", {})
            if scope["method"] == "POST" and scope["path"] in PREDICT_ROUTES:
                self.metrics.answered(status, seconds, state.get("error_reason"))
            host, port = scope.get("client") or ("-", 0)
            papers = state.get("papers")
            access_log.info(
                '%s:%d "%s %s HTTP/%s" %d %.1f ms%s',
                host,
                port,
                scope["method"],
                scope["path"],
                scope["http_version"],
                status,
                seconds * 1000,
                "" if papers is None else f" papers={papers}",
            )
