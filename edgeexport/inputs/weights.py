"""Load user weights without ever unpickling code: ``weights_only=True`` or safetensors."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from edgeexport.core.errors import UserError

MAX_NAMES = 5


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            raise UserError(f"{path}: corrupt or not a safetensors file") from None
    if path.suffix not in (".pt", ".pth", ".bin"):
        raise UserError(f"{path}: unsupported weights format (use .pt, .pth or .safetensors)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: not a plain tensor state_dict (corrupt, or holds objects "
                        "other than tensors); refusing to unpickle it") from None
    except Exception:  # truncated zip archives, foreign files: RuntimeError, EOFError, …
        raise UserError(f"{path}: corrupt or truncated torch file; refusing to load it") \
            from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    return obj


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load strictly; name missing, unexpected and mis-shaped keys."""
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)}≠{tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    for label, names in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("wrong shapes", wrong)):
        if names:
            more = f" (+{len(names) - MAX_NAMES} more)" if len(names) > MAX_NAMES else ""
            problems.append(f"{label}: {', '.join(names[:MAX_NAMES])}{more}")
    if problems:
        raise UserError(f"{path} does not fit the model: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)

