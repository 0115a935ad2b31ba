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


def load_weights(model: torch.nn.Module, path: Path, family: str | None = None) -> None:
    """Load strictly; name missing, unexpected and mis-shaped keys, and say what the weights
    look like when they fit another --num-classes or (``family`` given) another α."""
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
        hint = shape_hint(state, expected, family)
        raise UserError(f"{path} does not fit the model: {'; '.join(problems)}"
                        + (f"; {hint}" if hint else ""))
    model.load_state_dict(state, strict=True)



# α values tried when weights' shapes miss the model's: the families' published grids and the
# common others.
ALPHAS_TRIED = (0.25, 0.35, 0.5, 0.75, 1.0, 1.25, 1.3, 1.4, 1.5, 1.75, 2.0)


def _classifier_key(expected: dict) -> str | None:
    """The last 2-D weight of the model: its classifier, whose rows are the classes."""
    keys = [k for k, v in expected.items() if k.endswith("weight") and v.dim() == 2]
    return keys[-1] if keys else None


def shape_hint(state: dict, expected: dict, family: str | None) -> str | None:
    """"these weights have 10 classes: --num-classes 10" when only the classifier's rows
    differ; "these look like α 0.5 (--alpha 0.5)" when a model of the family at another α has
    the weights' shapes (any class count)."""
    if set(state) == set(expected) and all(state[k].shape == v.shape
                                           for k, v in expected.items()):
        return None  # they fit: nothing to hint
    head = _classifier_key(expected)
    classes = None
    if head is not None and head in state and state[head].dim() == 2:
        classes = int(state[head].shape[0])
    if head is not None and set(state) == set(expected):
        others = [k for k in expected if not k.startswith(head.rsplit(".", 1)[0] + ".")]
        if all(state[k].shape == expected[k].shape for k in others) and \
                classes != expected[head].shape[0]:
            return f"these weights have {classes} classes: --num-classes {classes}"
    if family is None:
        return None
    from edgeexport.models import create_model
    for alpha in ALPHAS_TRIED:
        try:
            candidate = create_model(family, alpha, classes or 1000).state_dict()
        except (ValueError, RuntimeError):
            continue
        if set(candidate) == set(state) and all(candidate[k].shape == state[k].shape
                                                for k in state):
            extra = f" --num-classes {classes}" if classes and head and \
                classes != expected[head].shape[0] else ""
            return f"these look like α {alpha:g} (--alpha {alpha:g}{extra})"
    return None
