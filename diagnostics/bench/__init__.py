"""`diagnostics bench`: how fast screening runs on this machine, measured in one process, one run.

Three questions, each answered by a ratio of two numbers taken in the same run on the same
machine state (absolute images/s mean little across machines; ratios travel):

- Is ONNX Runtime worth it? ORT vs PyTorch eager on the bundled model (goal: 1.8x at batch 8).
- Is ORT using the CPU well? A DenseNet-121's achieved GFLOP/s as a share of a matrix-multiply
  peak measured beside it (goal: 0.80).
- Does the pipeline around the model cost much? DICOM bytes -> StudyResult images/s as a share
  of model-only images/s (goal: 0.7 on uncompressed input).

Competing measurements are interleaved round by round, so drift in machine load (another job
starting, thermal limits) affects them alike. A package of its own in the faces layer (nothing
in the library imports it), typed and tested, so that the CLI, `benchmarks/bench_screening.py`
and the tests share one implementation: `config` (what to measure), `timing` (how),
`models` (ONNX Runtime vs eager, the matmul peak), `pipeline` (DICOM -> result vs model only),
`report` (the run and its summary). `diagnostics bench --service` is `service` (the HTTP
service beside in-process screening, one run), `server` (the real service in a subprocess,
its memory from /proc, C-STORE) and `clients` (the studies sent and how calls are timed).
"""

from diagnostics.bench.config import GOALS, BenchConfig, Report
from diagnostics.bench.report import run_bench, summary_lines
from diagnostics.bench.timing import time_interleaved

__all__ = ["GOALS", "BenchConfig", "Report", "run_bench", "summary_lines", "time_interleaved"]
