"""A PyTorch model named on the command line: `path/to/file.py:Name` or `package.module:Name`, built with --arg values."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path

from compiler.diagnostics import NetError, did_you_mean

SPEC_FORMS = "path/to/file.py:Name or package.module:Name"


def parse_arg(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE a Python literal (10, 0.5, [2, 2, 2, 2], "relu", True), else the text itself."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise NetError(f"--arg expects KEY=VALUE with KEY a Python name, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def is_python_spec(source: str) -> bool:
    """Whether SRC names a Python model (`file.py:Name`, `pkg.mod:Name`) rather than a file to read."""
    target, sep, name = source.rpartition(":")
    return bool(sep) and name.isidentifier() and (target.endswith(".py") or not Path(source).exists())


def load_python_module(source: str):
    """The Python module a spec names, imported (a file is run as a module with its folder on sys.path)."""
    target, _, _ = source.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise NetError(f"no such Python file: {path}", notes=[f"a Python model is given as {SPEC_FORMS}"])
        name = "_netdsl_model_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        sys.path.insert(0, str(path.parent.resolve()))
        try:
            spec.loader.exec_module(module)
        except SyntaxError as err:
            raise NetError(f"{err.filename}:{err.lineno}:{err.offset or 1}: syntax error: {err.msg}") from None
        except Exception as err:  # noqa: BLE001 (the user's module may raise anything while it loads)
            raise NetError(f"{path}: running it raised {type(err).__name__}: {err}".splitlines()[0],
                           notes=located_frames(err, str(path.resolve()))) from None
        finally:
            sys.path.remove(str(path.parent.resolve()))
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as err:
        raise NetError(f"cannot import '{target}': no module named '{err.name}'",
                       notes=[f"a Python model is given as {SPEC_FORMS}"]) from None
    except Exception as err:  # noqa: BLE001
        raise NetError(f"importing '{target}' raised {type(err).__name__}: {err}".splitlines()[0]) from None


def located_frames(err: BaseException, file: str | None = None) -> list[str]:
    """'file:line: code' for the frames of err's traceback in `file` (or outside torch and netdsl)."""
    frames = traceback.extract_tb(err.__traceback__)
    mine = [f for f in frames if (f.filename == file if file else user_frame(f.filename))]
    return [f"{f.filename}:{f.lineno}: {(f.line or '').strip()}" for f in mine[-3:]]


def user_frame(filename: str) -> bool:
    """A frame of the user's code: not torch's, not netdsl's, not Python's own."""
    import torch

    own = (str(Path(torch.__file__).parent), str(Path(__file__).resolve().parents[1]), "<frozen")
    return not any(filename.startswith(p) for p in own) and "/importlib/" not in filename


def build_model(source: str, args: dict):
    """The nn.Module a spec names: a class instantiated, or a factory called, with `args` as keyword arguments."""
    from torch import nn

    module = load_python_module(source)
    name = source.rpartition(":")[2]
    obj = getattr(module, name, None)
    if obj is None:
        candidates = [k for k, v in vars(module).items() if inspect.isclass(v) and issubclass(v, nn.Module)
                      or inspect.isfunction(v)]
        raise NetError(f"{source}: the module has no '{name}'", notes=did_you_mean(name, candidates)
                       + [f"models defined there: {', '.join(sorted(candidates)) or 'none'}"])
    if not callable(obj):
        raise NetError(f"{source}: '{name}' is a {type(obj).__name__}, not an nn.Module class or a factory function")
    try:
        signature = f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        signature = name
    try:
        model = obj(**args)
    except TypeError as err:
        raise NetError(f"{source}: {name}({', '.join(f'{k}={v!r}' for k, v in args.items())}) failed: {err}",
                       notes=[f"its signature: {signature}", "give its arguments with --arg KEY=VALUE"]) from None
    except Exception as err:  # noqa: BLE001 (the user's constructor may raise anything)
        raise NetError(f"{source}: {name}(...) raised {type(err).__name__}: {err}".splitlines()[0],
                       notes=located_frames(err)) from None
    if not isinstance(model, nn.Module):
        raise NetError(f"{source}: {name}(...) returned a {type(model).__name__}, not an nn.Module")
    return model
