"""`hf-hybrid serve`: a model over HTTP (FastAPI and uvicorn, requests batched), or its handler on Ray Serve."""

import argparse
import importlib.util

from ..errors import UserError
from ..loading import load_trained
from . import description
from .model_options import chosen_device


def run_serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hf-hybrid serve", description=description("serve"))
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id")
    parser.add_argument("--revision", help="branch, tag or commit of the Hub repo")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: one the system picks)")
    parser.add_argument(
        "--device",
        default="auto",
        help="cpu (the folded fast path), cuda, cuda:N (the model as trained) or auto (a CUDA GPU when there is one)",
    )
    parser.add_argument("--max_batch_size", type=int, default=64, help="most papers classified in one call")
    parser.add_argument(
        "--max_wait_ms", type=float, default=5.0, help="longest wait for a batch to fill after its first request"
    )
    parser.add_argument(
        "--max_queue", type=int, default=1024, help="most papers waiting; past it, requests get 503 and Retry-After"
    )
    parser.add_argument("--max_request_bytes", type=int, default=1_000_000, help="largest request body (else 413)")
    parser.add_argument("--request_timeout", type=float, default=30.0, help="seconds before a request gets 504")
    parser.add_argument(
        "--ray_address",
        help="deploy the model's handler.py on Ray Serve instead (the ray extra): 'auto' (the running cluster), "
        "'local' (start one on this machine) or ray://HOST:10001",
    )
    parser.add_argument("--ray_replicas", type=int, default=1, help="with --ray_address: replicas (a model each)")
    parser.add_argument("--ray_cpus_per_replica", type=float, default=1, help="with --ray_address: CPUs of each")
    args = parser.parse_args(argv)
    from ..ranges import AT_LEAST_ONE, NOT_NEGATIVE, POSITIVE, check_ranges

    check_ranges(
        args,
        {
            "port": (lambda value: 0 <= value < 65536, "a port number from 0 to 65535"),
            "max_batch_size": AT_LEAST_ONE,
            "max_wait_ms": NOT_NEGATIVE,
            "max_queue": AT_LEAST_ONE,
            "max_request_bytes": AT_LEAST_ONE,
            "request_timeout": POSITIVE,
            "ray_replicas": AT_LEAST_ONE,
            "ray_cpus_per_replica": POSITIVE,
        },
    )
    if args.ray_address is not None:
        if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
            raise UserError("--ray_address needs Ray Serve: pip install 'hf-hybrid[ray]'")
        from ..serving.ray_serve import deploy

        if args.ray_address == "local":
            chosen_device(args)  # the replicas run on this machine: a device it lacks is refused now
        deploy(
            args.model,
            revision=args.revision,
            address=None if args.ray_address == "local" else args.ray_address,
            host=args.host,
            port=args.port,
            num_replicas=args.ray_replicas,
            num_cpus_per_replica=args.ray_cpus_per_replica,
            device=args.device,
        )
        return
    device = chosen_device(args)
    try:
        from ..serving import ServeSettings, serve
    except ImportError as error:
        raise ImportError(
            "the server needs FastAPI, uvicorn and prometheus_client: pip install 'hf-hybrid[serve]'"
        ) from error
    tokenizer, model = load_trained(args.model, args.revision)
    model.to(device)
    if device.type == "cpu":
        model.fold_for_inference()
    settings = ServeSettings(
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_request_bytes=args.max_request_bytes,
        request_timeout=args.request_timeout,
    )
    serve(model, tokenizer, settings, host=args.host, port=args.port)
