"""Train an hf-hybrid model: the same command line as `hf-hybrid train`.

python scripts/train.py --train_file papers.csv --output_dir out [any TrainingArguments flag]
torchrun --nproc_per_node 2 scripts/train.py --train_file papers.csv --output_dir out
"""

import sys

from hf_hybrid.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
