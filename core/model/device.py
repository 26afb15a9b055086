"""Where and in what precision a model runs: `--device` (cpu, the default; cuda, cuda:N, mps) and `--dtype`
(float32, the default; bfloat16, float16), checked before anything is loaded or written (one line each).

The model's weights and its forward pass go to the device, and so do extraction's reducers (core.units.reduce),
whose state_dict and finalize give CPU copies: checkpoints, shard results and the index are the same code on any
device. A run's device and dtype are part of its identity when not the defaults: a resumed run must use the
same kernels.
"""

from __future__ import annotations

import torch

from core.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DeviceError(UserError):
    """A device this machine lacks, or an unknown dtype; one line."""


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise DeviceError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
        return dtype
    if dtype not in DTYPES:
        raise DeviceError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for `device`, or DeviceError when it is malformed or absent here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"--device {device!r}: expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: no CUDA GPU here (torch.cuda.is_available() is False); "
                              "leave --device out to run on the CPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"--device {device}: no Apple GPU (MPS) here; leave --device out to run on the CPU")
    elif dev.type != "cpu":
        raise DeviceError(f"--device {device!r}: expected cpu, cuda, cuda:N or mps")
    return dev


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's weights are (the CPU for a module without any)."""
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
