"""Running the application: a socket bound before the server starts, uvicorn, and a graceful stop.

SIGTERM (or Ctrl-C) stops the server from accepting connections, lets it answer every request it has taken, and
ends the process with status 0. uvicorn's own handlers would then raise the signal again, ending the process as
killed by it; `GracefulServer` keeps its graceful stop and leaves that out.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
from contextlib import contextmanager

import uvicorn

from ..errors import UserError
from .app import ServeSettings, create_app

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Connections waiting to be accepted (uvicorn's default).
BACKLOG = 2048
# How long an idle keep-alive connection stays open (seconds).
KEEP_ALIVE_S = 5


class GracefulServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self):
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` (port 0: one the system picks); an `OSError` says why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    sock.listen(BACKLOG)  # from now on connections wait for the server instead of being refused
    return sock


def serve(model, tokenizer, settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serves `model` and `tokenizer` on `host:port` until SIGTERM or Ctrl-C; returns once every request taken has
    been answered."""
    sock = bind(host, port)
    config = uvicorn.Config(
        create_app(model, tokenizer, settings),
        log_config=None,
        backlog=BACKLOG,
        access_log=False,  # the application writes its own, with the time taken
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=settings.request_timeout + KEEP_ALIVE_S,
    )
    server = GracefulServer(config)
    # What is loaded by now (torch, transformers, the model: half a million objects) lives as long as the process; a
    # full collection that walked it would stall every request in flight for a large part of a second.
    gc.collect()
    gc.freeze()
    bound_host, bound_port = sock.getsockname()[:2]
    logger.info("serving %s on http://%s:%d (SIGTERM or Ctrl-C stops it)", model.name_or_path, bound_host, bound_port)
    server.run(sockets=[sock])
    if not server.started:
        raise UserError("the server did not start: see the log above")
    logger.info("stopped: every request taken was answered")
