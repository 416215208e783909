"""`hf-hybrid serve` under load, against the bulk path on the same papers in the same run.

The server is started on this machine (`hf-hybrid serve --device cpu`, its default flags unless `--server_flags`);
for each count of `--clients` (default 1, 8 and 64), that many concurrent clients (asyncio connections kept alive,
in one process of their own that shares the cores with the server) each send one paper per request, waiting for
each answer, for `--seconds`: papers/s, p50/p99 latency, answers by status, connection errors, the server's peak
RSS. The bulk path (`BulkClassifier`, what `hf-hybrid predict --input_file` runs) classifies the same papers in a
fresh process, before the clients and again after them (a machine whose load drifts moves both); the server is
compared with their mean. Beside the rates, the CPU time each paper took (the server's and the clients' processes
together, against the bulk process's), which a machine shared with other work changes less than the rates. Then
`--memory_requests` requests (64 clients) measure the server's RSS after the first 1,000 and at the end. `--model
DIR` is a trained folder; without it, an untrained model of `--train_flags`' sizes (its speed is a trained one's).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import in_fresh_process, parse_train_flags, peak_rss_mib, save_model_under_test, standard_split

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"serving .* on http://([\d.]+):(\d+) ")
FIRST_REQUESTS = 1000
TARGETS = {"share_of_bulk": 0.60, "p99_ms": 250.0, "rss_growth_mib": 50.0}


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="a trained model folder (default: untrained)")
    parser.add_argument("--train_flags", default="", help="model sizes of the untrained model, as `train` flags")
    parser.add_argument("--split_seed", type=int, default=42, help="seed of the 70/15/15 split (training's)")
    parser.add_argument("--max_test_papers", type=int, default=2000, help="the test papers the clients send")
    parser.add_argument("--clients", default="1,8,64", help="counts of concurrent clients, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each count of clients sends")
    parser.add_argument(
        "--memory_requests", type=int, default=100_000, help="requests of the memory run (0: no memory run)"
    )
    parser.add_argument("--server_flags", default="", help="more `hf-hybrid serve` flags, e.g. '--max_wait_ms 2'")


def run(args) -> dict:
    from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from hf_hybrid.training_args import HybridTrainingArguments, ModelArguments

    from .speed import untrained_model

    workdir = args.workdir
    if args.model:
        model = HybridCNNLSTMForSequenceClassification.from_pretrained(args.model)
        tokenizer = HybridCNNLSTMTokenizer.from_pretrained(args.model)
        test = standard_split(args, [model.config.id2label[i] for i in range(model.config.num_labels)])["test"]
    else:
        flags = ["--output_dir", str(workdir), *shlex.split(args.train_flags)]
        model_args, _ = parse_train_flags(flags, (ModelArguments, HybridTrainingArguments))
        splits = standard_split(args)
        model, tokenizer = untrained_model(model_args, splits["train"])
        test = splits["test"]
    model_dir = save_model_under_test(model.eval(), tokenizer, workdir / "model")
    del model
    papers = [{"title": title, "abstract": abstract} for title, abstract in zip(test["title"], test["abstract"])]
    counts = [int(count) for count in args.clients.split(",")]

    print(f"[benchmark] bulk path on {len(papers)} papers ...", file=sys.stderr, flush=True)
    bulk = in_fresh_process(measure_bulk, model_dir, papers, args.threads)
    labels = bulk.pop("labels")
    server = start_server(model_dir, args.threads, shlex.split(args.server_flags))
    try:
        agreement = label_agreement(server, papers[:50], labels[:50])
        levels = {}
        for count in counts:
            print(f"[benchmark] {count} client(s) for {args.seconds:g} s ...", file=sys.stderr, flush=True)
            server_cpu = cpu_seconds(server["process"].pid)
            figures = in_fresh_process(load, server["address"], papers, count, args.seconds, None)
            server_cpu = cpu_seconds(server["process"].pid) - server_cpu
            answered = max(figures["status"].get("200", 0), 1)
            levels[str(count)] = {
                **figures,
                "server_cpu_ms_per_paper": server_cpu / answered * 1000,
                "cpu_ms_per_paper": (server_cpu + figures["client_cpu_s"]) / answered * 1000,
                "server_peak_rss_mib": rss_mib(server["process"].pid, "VmHWM"),
            }
        memory = None
        if args.memory_requests:
            print(f"[benchmark] memory: {args.memory_requests} requests ...", file=sys.stderr, flush=True)
            first = min(FIRST_REQUESTS, args.memory_requests)
            figures = in_fresh_process(load, server["address"], papers, 64, None, first)
            after_first = rss_mib(server["process"].pid, "VmRSS")
            rest = in_fresh_process(load, server["address"], papers, 64, None, args.memory_requests - first)
            memory = {
                "requests": args.memory_requests,
                "rss_after_first_mib": after_first,
                "first_requests": first,
                "rss_at_end_mib": rss_mib(server["process"].pid, "VmRSS"),
                "errors": figures["connection_errors"] + rest["connection_errors"],
                "non_2xx": sum(n for code, n in {**figures["status"], **rest["status"]}.items() if code != "200"),
            }
    finally:
        server["process"].terminate()
        exit_status = server["process"].wait(120)
    print(f"[benchmark] bulk path again on {len(papers)} papers ...", file=sys.stderr, flush=True)
    again = in_fresh_process(measure_bulk, model_dir, papers, args.threads)
    again.pop("labels")
    bulk = {
        "papers_per_s": (bulk["papers_per_s"] + again["papers_per_s"]) / 2,
        "papers_per_s_before_and_after": [bulk["papers_per_s"], again["papers_per_s"]],
        "cpu_ms_per_paper": (bulk["cpu_ms_per_paper"] + again["cpu_ms_per_paper"]) / 2,
        "peak_rss_mib": max(bulk["peak_rss_mib"], again["peak_rss_mib"]),
    }
    return {
        "question": "serve",
        "model": str(args.model) if args.model else f"untrained ({args.train_flags or 'default sizes'})",
        "papers": len(papers),
        "seconds_per_level": args.seconds,
        "server_flags": args.server_flags,
        "bulk": bulk,
        "clients": levels,
        "label_agreement_with_bulk": agreement,
        "memory": memory,
        "server_exit_status": exit_status,
        "load_average_at_end": os.getloadavg(),
    }


def measure_bulk(model_dir: str, papers: list[dict], threads: int) -> dict:
    """In a fresh process: the folded model's `BulkClassifier` on `papers` (the second of two passes, timed)."""
    import torch

    from hf_hybrid.bulk import BulkClassifier
    from hf_hybrid.loading import load_trained

    torch.set_num_threads(threads)
    tokenizer, model = load_trained(model_dir)
    classify = BulkClassifier(model.fold_for_inference(), tokenizer)
    titles, abstracts = [p["title"] for p in papers], [p["abstract"] for p in papers]
    classify(titles, abstracts)
    started, cpu = time.perf_counter(), time.process_time()
    records = classify(titles, abstracts)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "papers_per_s": len(papers) / seconds,
        "cpu_ms_per_paper": cpu / len(papers) * 1000,
        "peak_rss_mib": peak_rss_mib(),
        "labels": [record["label"] for record in records],
    }


def start_server(model_dir: str, threads: int, flags: list[str]) -> dict:
    command = [sys.executable, "-m", "hf_hybrid.cli", "serve", "--model", model_dir, "--port", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    log = open(Path(model_dir).parent / "server.log", "w+")  # one access line a request: not a pipe that fills up
    process = subprocess.Popen([*command, *flags], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        match = LISTENING.search(Path(log.name).read_text())
        if match:
            return {"process": process, "address": (match[1], int(match[2]))}
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not start:\n{Path(log.name).read_text()[-3000:]}")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system, all threads) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(field + ":")) / 1024


def label_agreement(server: dict, papers: list[dict], labels: list[str]) -> float:
    import http.client

    same = 0
    for paper, label in zip(papers, labels):
        connection = http.client.HTTPConnection(*server["address"], timeout=60)
        connection.request("POST", "/", json.dumps({"inputs": paper}), {"Content-Type": "application/json"})
        same += json.loads(connection.getresponse().read())["label"] == label
        connection.close()
    return same / len(papers)


# ------------------------------------------------------------------------------------------------ the clients


def load(address, papers: list[dict], clients: int, seconds: float | None, requests: int | None) -> dict:
    """In a fresh process: `clients` connections each sending one paper per request (waiting for each answer),
    for `seconds` or until `requests` requests were answered in all."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    bodies = [json.dumps({"inputs": paper}).encode() for paper in papers]
    cpu = time.process_time()
    figures = asyncio.run(_load(address, bodies, clients, seconds, requests))
    return {**figures, "client_cpu_s": time.process_time() - cpu}


async def _load(address, bodies: list[bytes], clients: int, seconds: float | None, requests: int | None) -> dict:
    latencies, status, errors = [], {}, [0]
    budget = [requests if requests is not None else float("inf")]
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else float("inf")

    async def client(index: int) -> None:
        reader = writer = None
        sent = index
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            body = bodies[sent % len(bodies)]
            sent += clients
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(*address)
                began = time.perf_counter()
                writer.write(
                    b"POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                code, length = await _response_head(reader)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - began)
                status[code] = status.get(code, 0) + 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors[0] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client(index) for index in range(clients)))
    elapsed = time.perf_counter() - started
    answered = status.get("200", 0)
    milliseconds = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "clients": clients,
        "seconds": elapsed,
        "papers_per_s": answered / elapsed,
        "latency_p50_ms": float(np.percentile(milliseconds, 50)),
        "latency_p99_ms": float(np.percentile(milliseconds, 99)),
        "status": status,
        "connection_errors": errors[0],
        "client_peak_rss_mib": peak_rss_mib(),
    }


async def _response_head(reader) -> tuple[str, int]:
    """The status code and Content-Length of an HTTP/1.1 response (the server sends both)."""
    code = (await reader.readline()).split(b" ", 2)[1].decode()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return code, length


# ------------------------------------------------------------------------------------------------ the report


def table(report: dict) -> str:
    bulk = report["bulk"]["papers_per_s"]
    rows = [
        f"{report['papers']} papers, {report['model']}, {report['seconds_per_level']:g} s per row; server flags: "
        f"{report['server_flags'] or 'defaults'}; labels as the bulk path's: {report['label_agreement_with_bulk']:.0%}",
        "",
        "| path | papers/s | × bulk | CPU ms per paper | p50 / p99 latency (ms) | answers 2xx / 4xx / 5xx "
        "| connection errors | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| bulk (`BulkClassifier`, one process): mean of before / after the clients ("
        f"{' / '.join(f'{value:,.1f}' for value in report['bulk']['papers_per_s_before_and_after'])}) "
        f"| {bulk:,.1f} | 1.00× | {report['bulk']['cpu_ms_per_paper']:.2f} | | | "
        f"| {report['bulk']['peak_rss_mib']:,.0f} |",
    ]
    for count, level in report["clients"].items():
        by_class = [sum(n for code, n in level["status"].items() if code.startswith(c)) for c in "245"]
        rows.append(
            f"| server, {count} client(s) | {level['papers_per_s']:,.1f} | {level['papers_per_s'] / bulk:.2f}× "
            f"| {level['cpu_ms_per_paper']:.2f} ({level['server_cpu_ms_per_paper']:.2f} + "
            f"{level['cpu_ms_per_paper'] - level['server_cpu_ms_per_paper']:.2f}) "
            f"| {level['latency_p50_ms']:.1f} / {level['latency_p99_ms']:.1f} | {' / '.join(map(str, by_class))} "
            f"| {level['connection_errors']} | {level['server_peak_rss_mib']:,.0f} |"
        )
    memory = report["memory"]
    if memory:
        growth = memory["rss_at_end_mib"] - memory["rss_after_first_mib"]
        rows += [
            "",
            f"Server RSS after {memory['first_requests']:,} requests: {memory['rss_after_first_mib']:,.0f} MiB; after "
            f"{memory['requests']:,}: {memory['rss_at_end_mib']:,.0f} MiB ({growth:+.0f} MiB; target within "
            f"{TARGETS['rss_growth_mib']:.0f}); non-2xx answers {memory['non_2xx']}, connection errors "
            f"{memory['errors']}.",
        ]
    most = report["clients"].get("64")
    if most:
        share, p99 = most["papers_per_s"] / bulk, most["latency_p99_ms"]
        errors = sum(n for code, n in most["status"].items() if code.startswith("5"))
        passed = share >= TARGETS["share_of_bulk"] and p99 <= TARGETS["p99_ms"] and errors == 0
        rows.append(
            f"\n64 clients: {share:.0%} of the bulk path's papers/s (target ≥ {TARGETS['share_of_bulk']:.0%}), p99 "
            f"{p99:.0f} ms (target ≤ {TARGETS['p99_ms']:.0f}), {errors} 5xx (target 0): {'PASS' if passed else 'FAIL'}"
        )
    load_average = ", ".join(f"{value:.2f}" for value in report["load_average_at_end"])
    rows.append(
        f"Server exit status after SIGTERM: {report['server_exit_status']}; load average at the end: {load_average}"
    )
    return "\n".join(rows)
