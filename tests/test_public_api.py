"""The public face of the package: the names SPEC promises, and ``__all__`` telling the truth."""

from __future__ import annotations
import __future__

import importlib
import importlib.metadata
import types

import pytest

import beeorm_celery

SPEC_NAMES = (
    "Entity",
    "Field",
    "Reference",
    "Registry",
    "Engine",
    "Context",
    "Where",
    "Pager",
    "consume_async_flush_events",
    "race",
    "BeeormError",
    "ConfigError",
    "ValidationError",
    "QueryTimeoutError",
)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_every_name_in_the_spec_is_importable_from_the_package(name: str) -> None:
    module = importlib.import_module("beeorm_celery")
    assert getattr(module, name, None) is not None, f"beeorm_celery.{name} is missing"
    assert name in beeorm_celery.__all__


def test_install_lives_in_the_celery_module() -> None:
    from beeorm_celery.celery import install

    assert callable(install)
    assert "install" not in beeorm_celery.__all__


def test_all_lists_exactly_the_public_names_the_package_defines() -> None:
    # Submodules (beeorm_celery.entity, ...) become attributes of the package when imported, and
    # `from __future__ import annotations` leaves a feature object named `annotations`: neither
    # is an export.
    public = {
        name
        for name, value in vars(beeorm_celery).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | __future__._Feature)
    }
    assert set(beeorm_celery.__all__) == public
    assert len(beeorm_celery.__all__) == len(set(beeorm_celery.__all__)), "duplicates in __all__"


def test_star_import_gives_every_name_in_all() -> None:
    namespace: dict[str, object] = {}
    exec("from beeorm_celery import *", namespace)
    assert set(beeorm_celery.__all__) <= set(namespace)


def test_every_error_descends_from_beeorm_error() -> None:
    errors = [
        value
        for name in beeorm_celery.__all__
        if isinstance(value := getattr(beeorm_celery, name), type)
        and issubclass(value, BaseException)
    ]
    assert beeorm_celery.QueryTimeoutError in errors
    for error in errors:
        assert issubclass(error, beeorm_celery.BeeormError), error
    assert issubclass(beeorm_celery.QueryTimeoutError, beeorm_celery.QueryError)
    assert issubclass(beeorm_celery.ReadOnlyEntityError, AttributeError)


def test_version_matches_the_installed_distribution() -> None:
    assert beeorm_celery.__version__ == importlib.metadata.version("beeorm-celery")
