"""Load a user's Target from ``path/to/file.py:function`` or ``package.module:function``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from harness.errors import SpecError
from harness.spec import Target

__all__ = ["load_target"]


def load_target(ref: str) -> Target:
    """Import ``ref`` and return its Target (a Target object, or a function returning one)."""
    module_ref, _sep, attr = ref.partition(":")
    attr = attr or "target"
    if not module_ref:
        raise SpecError(f"target reference {ref!r}", expected="FILE.py[:NAME] or MODULE[:NAME]")
    if module_ref.endswith(".py"):
        path = Path(module_ref).resolve()
        if not path.is_file():
            raise SpecError(f"target file {path} does not exist", source=ref)
        # Its directory goes on sys.path (and stays: workload code imports lazily), so
        # target.py imports its own modules plainly. Module names are global to the
        # process: give them names another target will not use.
        if str(path.parent) not in sys.path:
            sys.path.append(str(path.parent))
        name = f"_deploy_chaos_target_{path.stem}_{abs(hash(path)) & 0xFFFF:x}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SpecError(f"cannot import {path}", source=ref)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_ref)
        except ImportError as exc:
            raise SpecError(f"cannot import module {module_ref!r}: {exc}", source=ref) from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        raise SpecError(f"{module_ref} has no {attr!r}", source=ref, choices=names) from None
    target = obj() if callable(obj) and not isinstance(obj, Target) else obj
    if not isinstance(target, Target):
        raise SpecError(
            f"{ref} gave {type(target).__name__}", source=ref, expected="a harness.Target"
        )
    return target
