"""Reading SAE weight files safely, for every format's loader (core.saes.formats, core.saes.transcoders): a pickle is
refused, never opened; a safetensors file that cannot be read is one line (SAEError)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from core.saes.sae import SAEError

PICKLES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLES:
        raise SAEError(f"{path} is a pickle file; SAE weights are only read from safetensors or .npz (a pickle can run "
                       f"code when opened)")


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise SAEError(f"missing weight file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SAEError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:120]})") from None
