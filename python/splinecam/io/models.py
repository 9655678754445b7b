"""Models from files: ``package.module:factory`` (with an optional state dict) or a
TorchScript file of a scripted ``nn.Sequential``, rebuilt as an ``nn.Module`` that
``torch.fx`` can trace (:func:`load_model`)."""
from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from typing import List, Optional

from splinecam.io.errors import InputError as CliError
from splinecam.io.errors import first_line as _first_line

__all__ = ["LoadedModel", "load_model"]


@dataclass
class LoadedModel:
    module: "object"                   # torch.nn.Module given to the engine
    name: str                          # for titles
    script: "object" = None            # the TorchScript module it was rebuilt from
    defaults_used: List[str] = field(default_factory=list)  # hyper-parameters not in the file


_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def load_model(spec: str, state_dict: Optional[str] = None) -> LoadedModel:
    """A model from a TorchScript file or ``package.module:factory``, in eval mode."""
    if os.path.exists(spec):
        if os.path.isdir(spec):
            raise CliError(f"MODEL '{spec}' is a folder; give a TorchScript file or package.module:factory")
        if state_dict is not None:
            raise CliError("--state-dict is for package.module:factory models; a TorchScript file already holds "
                           "its weights")
        lm = _load_torchscript(spec)
    elif _FACTORY.match(spec):
        lm = LoadedModel(_load_factory(spec), spec)
        if state_dict is not None:
            _load_state_dict(lm.module, state_dict)
    else:
        raise CliError(f"MODEL '{spec}' not found: it is neither an existing file (a TorchScript model) nor "
                       f"package.module:factory (e.g. mymodels:make_mlp)")
    lm.module.eval()
    return lm


def _load_factory(spec: str):
    from torch import nn

    mod_name, attr = spec.split(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # as `python -m` does, also for the console script
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name and (mod_name == e.name or mod_name.startswith(e.name + ".")):
            raise CliError(f"cannot import '{mod_name}' for MODEL '{spec}': no module named '{e.name}' (run "
                           f"splinecam from the folder that holds it, or add that folder to PYTHONPATH)") from None
        raise CliError(f"importing '{mod_name}' failed: {type(e).__name__}: {e}") from None
    except Exception as e:
        raise CliError(f"importing '{mod_name}' failed: {type(e).__name__}: {_first_line(e)}") from None
    obj = mod
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            where = mod_name + "".join("." + p for p in attr.split(".")[:i])
            names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else (
                f"; it has {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}" if names else "")
            raise CliError(f"factory '{attr}' not found: '{where}' has no attribute '{part}'{hint}")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise CliError(f"'{spec}' is a {type(obj).__name__}, not a factory (a function returning an nn.Module)")
    try:
        model = obj()
    except Exception as e:
        raise CliError(f"calling {spec}() failed: {type(e).__name__}: {_first_line(e).split(': ', 1)[-1]}") from None
    if not isinstance(model, nn.Module):
        raise CliError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _load_state_dict(model, path: str) -> None:
    import torch

    if not os.path.isfile(path):
        raise CliError(f"state dict file '{path}' not found")
    sd = _torch_load_weights(path)
    if sd is None:
        raise CliError(f"'{path}' is a TorchScript file, not a state dict: give it as MODEL, without --state-dict")
    if isinstance(sd, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CliError(f"'{path}' holds a {type(sd).__name__} that is not a state dict (save weights with "
                       f"torch.save(model.state_dict(), FILE))")
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]

    def some(keys):
        return ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")

    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({some(unexpected)})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} of another shape (e.g. '{k}': {tuple(sd[k].shape)} in the file, "
                        f"{tuple(own[k].shape)} in the model)")
    if problems:
        raise CliError(f"the weights in '{path}' do not fit the model built by the factory: tensors "
                       f"{'; '.join(problems)}")
    try:
        model.load_state_dict(sd)
    except Exception as e:
        raise CliError(f"the weights in '{path}' do not fit the model: {_first_line(e)}") from None


def _torch_load_weights(path: str):
    """``torch.load(path, weights_only=True)`` on the CPU; ``None`` for a TorchScript
    archive; :class:`CliError` when the file cannot be read that way."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            if "TorchScript" in str(e):
                return None
            raise CliError(f"cannot read '{path}' as saved tensors (torch.load with weights_only=True: "
                           f"{str(e).split('. ')[0] if str(e) else type(e).__name__}); save weights with "
                           f"torch.save(model.state_dict(), FILE)") from None


# TorchScript: splinecam reads a model's structure from Python modules (torch.fx), which
# a TorchScript file does not contain. A scripted nn.Sequential is therefore rebuilt as
# an nn.Sequential of ordinary torch.nn modules from its recorded tensors and constants.
# Scripted modules keep their constants (stride, padding, negative_slope, ...); traced
# ones keep only tensors, so defaults stand in for what is missing, and the rebuilt
# model is checked against the file's own forward on the actual points before use.

_SKIP_INIT_ARGS = {"self", "device", "dtype", "inplace", "return_indices"}


def _const(m, name, default, missing: list, path: str):
    try:
        return getattr(m, name)
    except AttributeError:
        missing.append(f"{path}.{name}" if path else name)
        return default


def _rebuild(m, path: str, missing: list):
    import inspect

    import torch
    from torch import nn

    kind = getattr(m, "original_name", type(m).__name__)
    params = dict(m.named_parameters(recurse=False))
    buffers = dict(m.named_buffers(recurse=False))
    where = f"'{path}' ({kind})" if path else f"({kind})"

    if kind == "Sequential":
        return nn.Sequential(*[_rebuild(c, f"{path}.{n}" if path else n, missing) for n, c in m.named_children()])
    if any(True for _ in m.named_children()):
        raise CliError(f"TorchScript module {where} has submodules but is not a Sequential: its forward() cannot be "
                       f"read from the file. Give the model as package.module:factory with --state-dict FILE")
    cls = getattr(nn, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        from splinecam import SUPPORTED_MODULES
        raise CliError(f"TorchScript module {where} is not a torch.nn module, so its forward() cannot be read from "
                       f"the file; splinecam rebuilds scripted nn.Sequential models of torch.nn layers such as "
                       f"{', '.join(c.__name__ for c in SUPPORTED_MODULES)}. Give the model as package.module:factory "
                       f"with --state-dict FILE")
    w = params.get("weight")
    if kind == "Linear":
        new = nn.Linear(w.shape[1], w.shape[0], bias=params.get("bias") is not None, dtype=w.dtype)
    elif kind in ("Conv1d", "Conv2d"):
        groups = _const(m, "groups", 1, missing, path)
        new = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=_const(m, "stride", 1, missing, path),
                  padding=_const(m, "padding", 0, missing, path), dilation=_const(m, "dilation", 1, missing, path),
                  groups=groups, bias=params.get("bias") is not None,
                  padding_mode=_const(m, "padding_mode", "zeros", missing, path), dtype=w.dtype)
    elif kind in ("BatchNorm1d", "BatchNorm2d"):
        ref = w if w is not None else buffers.get("running_mean")
        if ref is None:
            raise CliError(f"TorchScript module {where} has neither weights nor running statistics")
        new = cls(ref.shape[0], eps=_const(m, "eps", 1e-5, missing, path), affine=w is not None,
                  track_running_stats=buffers.get("running_mean") is not None, dtype=ref.dtype)
    else:
        # Any other torch.nn module: its constructor arguments from the recorded constants.
        constants = set(getattr(cls, "__constants__", ()))
        kwargs = {}
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name in _SKIP_INIT_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if hasattr(m, name):
                kwargs[name] = getattr(m, name)
            elif p.default is p.empty:
                raise CliError(f"TorchScript module {where}: its setting '{name}' is not recorded in the file (was it "
                               f"made with torch.jit.trace?). Save the model with torch.jit.script, or give "
                               f"package.module:factory with --state-dict FILE")
            elif name in constants:
                missing.append(f"{path}.{name}" if path else name)
        try:
            new = cls(**kwargs)
        except Exception as e:
            raise CliError(f"TorchScript module {where} cannot be rebuilt: {_first_line(e)}") from None
    with torch.no_grad():
        for n, t in list(new.named_parameters(recurse=False)) + list(new.named_buffers(recurse=False)):
            src = params.get(n, buffers.get(n))
            if src is None or src.shape != t.shape:
                raise CliError(f"TorchScript module {where}: cannot rebuild its tensor '{n}'")
            t.data = src.detach().clone()
    return new


def _load_torchscript(path: str) -> LoadedModel:
    import torch

    try:
        sm = torch.jit.load(path, map_location="cpu")
    except Exception:
        try:
            content = _torch_load_weights(path)
        except CliError:
            content = None
        if isinstance(content, dict):
            raise CliError(f"'{path}' holds saved tensors (a state dict?), not a TorchScript model: give the model "
                           f"as package.module:factory and this file as --state-dict {path}") from None
        raise CliError(f"'{path}' is not a TorchScript file (torch.jit.load cannot read it). Save models with "
                       f"torch.jit.save(torch.jit.script(model), FILE), or give package.module:factory with "
                       f"--state-dict FILE") from None
    kind = getattr(sm, "original_name", type(sm).__name__)
    if kind != "Sequential":
        raise CliError(f"the TorchScript model in '{path}' is a {kind}, not an nn.Sequential: splinecam reads a "
                       f"custom forward() from its Python code (torch.fx), which a TorchScript file does not hold. "
                       f"Give the model as package.module:factory with --state-dict FILE (torch.save("
                       f"model.state_dict(), FILE)), or script an nn.Sequential of torch.nn layers")
    sm.eval()
    missing: list = []
    model = _rebuild(sm, "", missing)
    return LoadedModel(model, os.path.basename(path), script=sm, defaults_used=missing)
