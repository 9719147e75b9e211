"""``--engine module:attribute``: import the application's Engine.

The attribute is an ``Engine`` or a zero-argument callable returning one (a factory keeps
connections out of import time). The working directory is importable, as with ``celery -A``:
a console script's ``sys.path`` otherwise starts at the script's own directory.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

from beeorm_celery.cli.state import config_error
from beeorm_celery.engine import Engine


def load_engine(spec: str) -> Engine:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise config_error(
            f"--engine {spec!r} is not 'module:attribute' (e.g. --engine myapp.orm:engine)"
        )
    module = _import(spec, module_name)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise config_error(
                f"--engine {spec!r}: module {module_name!r} has no attribute {attribute!r}"
            )
        target = getattr(target, part)
    if isinstance(target, Engine):
        return target
    if callable(target) and not isinstance(target, type):
        try:
            built = target()
        except Exception as e:
            raise config_error(
                f"--engine {spec!r}: calling {attribute}() failed:\n{_format(e)}"
            ) from e
        if isinstance(built, Engine):
            return built
        raise config_error(
            f"--engine {spec!r}: {attribute}() returned {type(built).__name__}, not an Engine"
        )
    raise config_error(
        f"--engine {spec!r}: {attribute} is {_describe(target)}, not an Engine; point --engine "
        "at the engine object, or at a zero-argument function returning one"
    )


def _import(spec: str, module_name: str) -> Any:
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            # the module itself (or a parent package) is missing: its name is the news
            raise config_error(
                f"--engine {spec!r}: cannot import {module_name!r}: {e} "
                f"(searched the working directory {cwd} and the Python path)"
            ) from e
        raise config_error(
            f"--engine {spec!r}: importing {module_name!r} failed:\n{_format(e)}"
        ) from e
    except Exception as e:
        # an error inside the application's module: its traceback is what the user needs
        raise config_error(
            f"--engine {spec!r}: importing {module_name!r} failed:\n{_format(e)}"
        ) from e


def _format(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).rstrip()


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"a class ({value.__name__})"
    return f"a {type(value).__name__}"
