"""Regenerate configs/*.json: every published funnel-transformer size (with and without decoder) + tiny."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from funnel_tf.config import FunnelConfig  # noqa: E402

SIZES = {
    # name: (block_sizes, block_repeats, d_model, n_head, d_inner)
    "small": ([4, 4, 4], [1, 1, 1], 768, 12, 3072),  # B4-4-4H768
    "medium": ([6, 3, 3], [1, 2, 2], 768, 12, 3072),  # B6-3x2-3x2H768
    "intermediate": ([6, 6, 6], [1, 1, 1], 768, 12, 3072),  # B6-6-6H768
    "large": ([8, 8, 8], [1, 1, 1], 1024, 16, 4096),  # B8-8-8H1024
    "xlarge": ([10, 10, 10], [1, 1, 1], 1024, 16, 4096),  # B10-10-10H1024
}


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name, (sizes, repeats, d, n, inner) in SIZES.items():
        cfg = FunnelConfig(block_sizes=sizes, block_repeats=repeats, d_model=d, n_head=n,
                           d_head=64, d_inner=inner)
        cfg.save(os.path.join(out_dir, f"{name}.json"))
        cfg.replace(num_decoder_layers=0).save(os.path.join(out_dir, f"{name}-base.json"))
    # CI size: three pooling blocks, decoder, BERT vocab; builds and trains in seconds on CPU.
    tiny = FunnelConfig(block_sizes=[2, 2, 2], num_decoder_layers=2, d_model=64, n_head=4,
                        d_head=16, d_inner=256, initializer_std=0.02)
    tiny.save(os.path.join(out_dir, "tiny.json"))
    tiny.replace(num_decoder_layers=0).save(os.path.join(out_dir, "tiny-base.json"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "configs")
