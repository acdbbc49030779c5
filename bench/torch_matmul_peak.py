#!/usr/bin/env python3
"""The device's measured matrix-product peak, the denominator of model FLOPs utilisation (MFU).

One large square product C = A B (n = 8192 on a GPU, where smaller ones do not fill the chip;
1024 on the CPU) in each precision: bf16 (bfloat16 inputs and output, f32 accumulation), tf32
(f32 storage, TF32 tensor cores) and f32 (strict). Each sample times `--inner` products back to
back and waits for the device once; the rate is the median sample, 2 n^3 FLOPs per product.
Prints one JSON object: {"bf16_tflops": ..., "tf32_tflops": ..., "f32_tflops": ..., ...}.
usage: bench/torch_matmul_peak.py [--device cuda|cpu] [--n N] [--samples 7] [--precisions bf16,tf32,f32]
"""
import argparse
import json
import statistics
import sys
import time

try:
    import torch
except ImportError:
    sys.exit("torch_matmul_peak.py needs PyTorch: apt-get install python3-torch")


def measure(precision, n, device, samples, inner):
    """TFLOP/s of an (n, n) x (n, n) product in `precision`, median of `samples`."""
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.rand(n, n, generator=gen).to(device, dtype)
    b = torch.rand(n, n, generator=gen).to(device, dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    torch.matmul(a, b, out=out)  # warm-up: cuBLAS handle, workspace, kernel selection
    sync()
    rates = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b, out=out)
        sync()
        rates.append(2.0 * n ** 3 * inner / (time.perf_counter() - t0) / 1e12)
    return statistics.median(rates), rates


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--n", type=int, default=0, help="matrix size (default 8192 on cuda, 1024 on cpu)")
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--inner", type=int, default=0, help="products per sample (default 10 cuda, 1 cpu)")
    ap.add_argument("--precisions", default="bf16,tf32,f32")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"framework": f"pytorch {torch.__version__}", "device": args.device,
                          "error": "no CUDA device visible to PyTorch"}))
        sys.exit(3)
    n = args.n or (8192 if args.device == "cuda" else 1024)
    inner = args.inner or (10 if args.device == "cuda" else 1)
    result = {"framework": f"pytorch {torch.__version__}", "device": args.device,
              "gpu": torch.cuda.get_device_name() if args.device == "cuda" else "",
              "threads": torch.get_num_threads(), "n": n, "inner": inner, "samples": {}}
    for precision in args.precisions.split(","):
        if precision not in ("bf16", "tf32", "f32"):
            sys.exit(f"torch_matmul_peak.py: --precisions: expected bf16, tf32 or f32, found '{precision}'")
        median, rates = measure(precision, n, args.device, args.samples, inner)
        result[f"{precision}_tflops"] = median
        result["samples"][precision] = rates
    print(json.dumps(result))


if __name__ == "__main__":
    main()
