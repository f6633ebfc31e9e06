"""What to export: a model built from a target.

Contract: a target is `FILE.py:NAME` or `package.module:NAME`. NAME is an `nn.Module` subclass (built with
`--init` keyword arguments), an `nn.Module` instance, or a function (called with `--init` keyword
arguments) returning a module, `(module, inputs)` or `(module, args, kwargs)` — `inputs` a tensor, a tuple
of tensors or a dict of keyword tensors. `load_target` returns the model in eval mode, the example inputs
the factory gave (if any), and the files that hold the user's code: the target's package and the model
class's package. Every problem is a one-line `UsageError`."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import UsageError, first_line


@dataclass
class Built:
    model: Any
    label: str  # how the report names the target (path relative to the cwd when below it)
    file: str  # the file that defines NAME
    class_file: Optional[str]  # the file of the model's class (the module `check` analyses)
    class_name: str
    args: Optional[tuple] = None  # example inputs from a factory
    kwargs: Optional[dict] = None
    roots: list = field(default_factory=list)  # directories of the user's code (package roots)


def split_target(target: str) -> tuple[str, str]:
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise UsageError(f"{target!r}: expected FILE.py:NAME or package.module:NAME")
    return where, name


def package_root(path: str) -> str:
    """The directory a file's top-level package lives in (the file's own directory outside a package)."""
    d = Path(path).resolve().parent
    if not (d / "__init__.py").exists():
        return str(d)
    while (d.parent / "__init__.py").exists():
        d = d.parent
    return str(d)


def load_file(path: str | Path):
    """Import a Python file as part of its package (so relative imports work)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    path = path.resolve()
    pkg_root = path.parent
    if (pkg_root / "__init__.py").exists():
        while (pkg_root.parent / "__init__.py").exists():
            pkg_root = pkg_root.parent
        base = pkg_root.parent
        modname = ".".join(path.relative_to(base).with_suffix("").parts)
    else:
        base, modname = path.parent, path.stem
    sys.path.insert(0, str(base))
    try:
        _forget_other(modname)
        if not all(p.isidentifier() for p in modname.split(".")) or "." in modname and base == path.parent:
            # a file name that is not a module name (seed.flag.py): load it under a safe one
            modname = "tracesafe_user_" + re.sub(r"\W", "_", path.stem)
            spec = importlib.util.spec_from_file_location(modname, path)
            assert spec is not None and spec.loader is not None  # a .py file always has both
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod  # dynamo looks the module up while compiling torch.cond
            spec.loader.exec_module(mod)
            return mod
        return importlib.import_module(modname)
    except SyntaxError as e:
        raise UsageError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed to import: say so in one line
        raise UsageError(f"{path}: import failed: {type(e).__name__}: {first_line(e)}") from None
    finally:
        sys.path.remove(str(base))


def _forget_other(modname: str) -> None:
    """The target's package is imported afresh: one of that name from another directory (an earlier target
    of this process), or a file rewritten since (`fix`, then `export`), must not stand in for it."""
    top = modname.split(".")[0]
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _load_module_name(name: str):
    if not all(p.isidentifier() for p in name.split(".")):
        raise UsageError(f"{name}: no such file, and not a module name")
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise UsageError(f"{name}: no such file or module ({first_line(e)})") from None
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{name}: import failed: {type(e).__name__}: {first_line(e)}") from None
    finally:
        sys.path.remove(os.getcwd())


def _label(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def load_target(target: str, init: Optional[dict] = None) -> Built:
    import torch

    where, name = split_target(target)
    if where.endswith(".py") or os.path.isfile(where):
        mod = load_file(where)
    else:
        mod = _load_module_name(where)
    file = getattr(mod, "__file__", None) or where
    obj = getattr(mod, name, None)
    if obj is None:
        here = sorted(
            n
            for n, v in vars(mod).items()
            if getattr(v, "__module__", None) == mod.__name__
            and (inspect.isclass(v) and issubclass(v, torch.nn.Module) or inspect.isfunction(v))
        )
        raise UsageError(f"no class {name!r} in {file} (modules and factories there: {', '.join(here) or 'none'})")
    args = kwargs = None
    if inspect.isclass(obj):
        if not issubclass(obj, torch.nn.Module):
            raise UsageError(f"{name} is not a torch.nn.Module subclass")
        model = _call(obj, init, name, "construct")
    elif isinstance(obj, torch.nn.Module):
        if init:
            raise UsageError(f"{name} is a module instance: --init has nothing to construct")
        model = obj
    elif callable(obj):
        made = _call(obj, init, name, "call")
        model, args, kwargs = _unpack(made, name)
    else:
        raise UsageError(f"{name} is neither a module class, a module nor a function returning one")
    cls = type(model)
    class_file = inspect.getsourcefile(cls) if cls.__module__ not in ("builtins",) else None
    roots = [package_root(file)]
    torch_dir = os.path.dirname(os.path.realpath(torch.__file__))
    if class_file and not os.path.realpath(class_file).startswith(torch_dir + os.sep):
        root = package_root(class_file)
        if root not in roots:
            roots.append(root)
    else:
        class_file = None
    return Built(model.eval(), f"{_label(file)}:{name}", file, class_file, cls.__name__, args, kwargs, roots)


def _call(fn, init: Optional[dict], name: str, verb: str):
    try:
        return fn(**(init or {}))
    except TypeError as e:
        raise UsageError(f"cannot {verb} {name}: {first_line(e)} (pass its arguments with --init JSON)") from None
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{name}(...) raised {type(e).__name__}: {first_line(e)}") from None


def _unpack(made, name: str):
    import torch

    if isinstance(made, torch.nn.Module):
        return made, None, None
    if isinstance(made, tuple) and made and isinstance(made[0], torch.nn.Module):
        rest = made[1:]
        if len(rest) == 1:
            inputs = rest[0]
            if isinstance(inputs, torch.Tensor):
                return made[0], (inputs,), {}
            if isinstance(inputs, dict):
                return made[0], (), dict(inputs)
            if isinstance(inputs, (tuple, list)):
                return made[0], tuple(inputs), {}
        if len(rest) == 2 and isinstance(rest[0], (tuple, list)) and isinstance(rest[1], dict):
            return made[0], tuple(rest[0]), dict(rest[1])
    raise UsageError(
        f"{name}() returned {type(made).__name__}: expected a module, (module, inputs) or (module, args, kwargs)"
    )
