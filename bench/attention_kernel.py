"""Benchmark (not a test): which scaled-dot-product-attention kernel a CPU training step should use.

Forward + backward of 12 attention layers at e5-small's shape (12 heads x 32 dims) for one training batch
(8 x 160 tokens, a QA window, 20 padded positions), per dtype, kernel (the default dispatch vs the math kernel)
and attention dropout (0.1, BERT's default, vs 0). Prints seconds and the ratio to the default kernel with
dropout 0.1 (what training used before `attention_dropout` existed). This is the measurement behind
`MultiTaskModel._attention_kernel` and the mini profile's `attention_dropout: 0.0`.

    .venv/bin/python bench/attention_kernel.py [--batch 8 --length 160 --repeats 12]
"""

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def timed(q, k, v, mask, p, kernel, repeats):
    ctx = sdpa_kernel(kernel) if kernel else contextlib.nullcontext()
    with ctx:
        for _ in range(2):  # warm-up
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p).sum().backward()
        t = time.perf_counter()
        for _ in range(repeats):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p).sum().backward()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=12, help="layers")
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fwd+bwd of {a.repeats} layers, "
          f"batch {a.batch} x {a.length} tokens, 12 heads x 32 dims")
    for dtype in (torch.float32, torch.bfloat16):
        q, k, v = (torch.randn(a.batch, 12, a.length, 32, dtype=dtype, requires_grad=True) for _ in range(3))
        mask = torch.zeros(a.batch, 1, a.length, a.length, dtype=dtype)
        mask[..., a.length - 20:] = torch.finfo(dtype).min
        ref = timed(q, k, v, mask, 0.1, None, a.repeats)
        for name, kernel in (("default", None), ("math", SDPBackend.MATH)):
            for p in (0.1, 0.0):
                s = ref if (kernel is None and p == 0.1) else timed(q, k, v, mask, p, kernel, a.repeats)
                print(f"{str(dtype):15s} {name:8s} attention dropout {p:.1f}: {s:.3f} s  ({s / ref:.2f}x the "
                      f"default kernel with dropout 0.1)")


if __name__ == "__main__":
    main()
