"""`hf-hybrid serve`: the model over HTTP, with the Inference Endpoints handler's contract and dynamic batching.

- `app`: the FastAPI application (routes, limits, errors, access log) and the classifier behind it;
- `batching`: the queue that makes concurrent requests one call of the model;
- `metrics`: what `GET /metrics` reports;
- `server`: uvicorn, the listening socket and the graceful stop;
- `ray_serve`: the model's `handler.py` as a Ray Serve deployment (the `ray` extra).

Needs the `serve` extra (FastAPI, uvicorn, prometheus_client).

Example:

```python
>>> from hf_hybrid.loading import load_trained
>>> from hf_hybrid.serving import ServeSettings, serve
>>> tokenizer, model = load_trained("arxiv-hybrid")  # doctest: +SKIP
>>> serve(model.fold_for_inference(), tokenizer, ServeSettings(max_batch_size=32), port=8000)  # doctest: +SKIP
```
"""

from .app import ServeSettings, create_app
from .server import serve

__all__ = ["ServeSettings", "create_app", "serve"]
