"""What `GET /metrics` reports, in the Prometheus text format (`prometheus_client`, a registry per server).

- `hf_hybrid_requests_total{code}`: classification requests (`POST /`, `POST /predict`) answered, by HTTP status;
- `hf_hybrid_request_errors_total{reason}`: those refused or failed, by reason (`invalid_json`, `invalid_request`,
  `too_large`, `overloaded`, `timeout`, `internal`);
- `hf_hybrid_papers_total`: papers classified;
- `hf_hybrid_batch_size`: papers per call of the model (histogram);
- `hf_hybrid_request_duration_seconds`: time from a request's arrival to its answer (histogram);
- `hf_hybrid_queued_papers`: papers waiting for the model now.
"""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ERROR_REASONS = ("invalid_json", "invalid_request", "too_large", "overloaded", "timeout", "internal")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch_size: int):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hf_hybrid_requests", "Classification requests answered, by HTTP status.", ["code"], registry=self.registry
        )
        self.errors = Counter(
            "hf_hybrid_request_errors",
            "Classification requests refused or failed, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in ERROR_REASONS:  # every reason is reported from the start, at 0
            self.errors.labels(reason)
        self.papers = Counter("hf_hybrid_papers", "Papers classified.", registry=self.registry)
        sizes = [1]
        while sizes[-1] < max_batch_size:
            sizes.append(min(sizes[-1] * 2, max_batch_size))
        self.batch_size = Histogram(
            "hf_hybrid_batch_size", "Papers per call of the model.", buckets=sizes, registry=self.registry
        )
        self.duration = Histogram(
            "hf_hybrid_request_duration_seconds",
            "Time from a classification request's arrival to its answer.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queued = Gauge("hf_hybrid_queued_papers", "Papers waiting for the model.", registry=self.registry)

    def answered(self, code: int, seconds: float, reason: str | None) -> None:
        self.requests.labels(str(code)).inc()
        self.duration.observe(seconds)
        if reason is not None:
            self.errors.labels(reason).inc()

    def batch(self, papers: int) -> None:
        self.batch_size.observe(papers)
        self.papers.inc(papers)

    def text(self) -> bytes:
        return generate_latest(self.registry)
