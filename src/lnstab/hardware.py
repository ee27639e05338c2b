"""Peak throughput of known accelerators, for the model-FLOPs utilization (MFU) of a run."""
from __future__ import annotations

import torch

# dense peak TFLOP/s of common GPUs (bf16 / tf32-or-fp32), for the model-FLOPs utilization estimate
PEAK_TFLOPS = {"H100": (989.0, 494.0), "H200": (989.0, 494.0), "A100": (312.0, 156.0)}


def mfu(model_tflops: float, device: torch.device, precision: str) -> float | None:
    """Achieved model TFLOP/s over the GPU's dense peak; None on CPU or an unknown GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, fp32) in PEAK_TFLOPS.items():
        if key in name:
            return model_tflops / (bf16 if precision == "bf16" else fp32)
    return None
