"""Fine-tune a trained hf-hybrid model (folder or Hub repo id): the same command line as `hf-hybrid finetune`.

python scripts/finetune.py --model your-name/arxiv-hybrid --train_file new_papers.csv --output_dir out
"""

import sys

from hf_hybrid.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
