"""hf-hybrid's benchmarks, one module per open question; `scripts/benchmark.py` runs them as subcommands.

* `speed`: training steps and inference against the research notebook's pipeline (`scripts/notebook_baseline.py`),
  with `fold_for_inference()`'s engines beside plain PyTorch;
* `onnx`: ONNX Runtime (float32 and int8) against PyTorch, parity and speed;
* `accuracy`: hf-hybrid against TF-IDF + LinearSVC on one split.
"""
