"""wmss_kernels: the Python (PyTorch) side of wmss-flow. See kernels/README.md."""

import json as _json
from pathlib import Path as _Path

# Written once, in pipeline/kernelJobs.ts (KERNEL_VERSION), and generated into job_schema.json.
__version__ = _json.loads((_Path(__file__).with_name("job_schema.json")).read_text(encoding="utf-8"))["kernelVersion"]
