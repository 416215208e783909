"""The model's own `handler.py` as a Ray Serve deployment (`hf-hybrid serve --ray_address ...`, the `ray` extra).

Each replica imports the `handler.py` of the model folder (or of a snapshot of the Hub repo) as the Hugging Face
Inference Toolkit does, builds its `EndpointHandler`, and answers the routes of `hf-hybrid serve` with it: `POST /`
(and `/predict`) with `{"inputs", "parameters"}`, `GET /` and `/health`; a malformed body gets a 400 with one line of
JSON, `{"error": "..."}`. A replica answers one request at a time; replicas add throughput.

Every node of the cluster needs hf-hybrid installed (the deployment's class is hf-hybrid's) and must be able to read
the model: a Hub repo id, or a folder that every node has.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import signal
import threading
from pathlib import Path

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

from ..errors import UserError
from ..model import HANDLER_FILE

logger = logging.getLogger(__name__)

APP_NAME = "hf-hybrid"


def load_endpoint_handler(folder: str | Path) -> type:
    """The `EndpointHandler` class of `folder`'s `handler.py`, imported from its file as the Inference Toolkit
    imports it (not as part of a package)."""
    path = Path(folder) / HANDLER_FILE
    if not path.is_file():
        raise UserError(f"{folder} has no {HANDLER_FILE}: save or push the model again with this hf-hybrid")
    spec = importlib.util.spec_from_file_location("handler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EndpointHandler


def model_folder(model: str, revision: str | None = None) -> str:
    """`model` itself when it is a folder, else the folder of a download of the Hub repo `model` at `revision`."""
    if Path(model).is_dir():
        return model
    from huggingface_hub import snapshot_download

    return snapshot_download(model, revision=revision)


@serve.deployment(name="HandlerDeployment", max_ongoing_requests=16)
class HandlerDeployment:
    """One replica: the model's `EndpointHandler` on `device`, behind the routes of `hf-hybrid serve`."""

    def __init__(self, model: str, revision: str | None = None, device: str = "auto"):
        folder = model_folder(model, revision)
        self.handler = load_endpoint_handler(folder)(folder, device=device)

    async def __call__(self, request: Request):
        path = request.url.path.rstrip("/") or "/"
        if request.method == "GET" and path in ("/", "/health"):
            return PlainTextResponse("Ok")
        if request.method != "POST" or path not in ("/", "/predict"):
            return JSONResponse({"error": f"no route {request.method} {path}"}, status_code=404)
        try:
            data = json.loads(await request.body())
        except ValueError as error:
            return JSONResponse({"error": f"the body is not JSON: {error}"}, status_code=400)
        try:
            return JSONResponse(self.handler(data))
        except ValueError as error:  # what the handler refuses
            return JSONResponse({"error": str(error)}, status_code=400)


def deployment(
    model: str,
    revision: str | None = None,
    num_replicas: int = 1,
    num_cpus_per_replica: float = 1,
    device: str = "auto",
):
    """The Ray Serve application of `model`: `num_replicas` replicas of `num_cpus_per_replica` CPUs each (and one
    GPU each with a `cuda` device), to pass to `serve.run`."""
    options = {"num_cpus": num_cpus_per_replica, "num_gpus": 1 if device.startswith("cuda") else 0}
    return HandlerDeployment.options(num_replicas=num_replicas, ray_actor_options=options).bind(model, revision, device)


def deploy(
    model: str,
    revision: str | None = None,
    address: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    num_replicas: int = 1,
    num_cpus_per_replica: float = 1,
    device: str = "auto",
    wait: bool = True,
) -> None:
    """Deploys `model` on the Ray cluster at `address` (None: the running one, or a new one on this machine), its
    HTTP proxy on `host:port`; with `wait`, serves until SIGTERM or Ctrl-C, then removes the application."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address)
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment(model, revision, num_replicas, num_cpus_per_replica, device), name=APP_NAME, route_prefix="/")
    logger.info("serving %s on Ray Serve at http://%s:%d (%d replica(s))", model, host, port, num_replicas)
    if not wait:
        return
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        serve.delete(APP_NAME)
        logger.info("removed the application %s from Ray Serve", APP_NAME)
