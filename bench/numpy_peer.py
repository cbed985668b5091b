"""numpy's GEMM (its bundled OpenBLAS), the only workload numpy runs.

usage: python numpy_peer.py gemm [--threads 2] [--jsonl FILE] [--seed S]
"""
import os
import time

import common as c

args = c.arguments(workloads=["gemm"])
c.pin_threads(args.threads)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

a, b = c.gemm_operands(args.seed)
out = np.empty_like(a)
with threadpool_limits(limits=args.threads):
    for _ in range(1 + c.GEMM_WARMUP):
        np.matmul(a, b, out=out)
    seconds = []
    for _ in range(c.GEMM_REPS):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        seconds.append(time.perf_counter() - t)
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]

value, extra = c.gemm_figures(seconds)
if blas:
    extra.update(blas=blas[0].get("internal_api"), blas_version=blas[0].get("version"),
                 blas_kernel=blas[0].get("architecture"), blas_threads=blas[0].get("num_threads"))
if os.environ.get("OPENBLAS_CORETYPE"):
    extra["OPENBLAS_CORETYPE"] = os.environ["OPENBLAS_CORETYPE"]
c.record(args, "numpy", np.__version__, "gflops", value, extra=extra)
