"""``Registry.validate()`` refuses inconsistent setups with a ConfigError naming entity and fix.

These checks need no server: validate() does not connect.
"""

from __future__ import annotations

import re

import pytest

from beeorm_celery import ConfigError, Entity, Field, Reference, Registry

MYSQL_URL = "mysql://root@127.0.0.1:3306/bt_registry_checks"
OTHER_MYSQL_URL = "mysql://root@127.0.0.1:3306/bt_registry_checks_other"
REDIS_URL = "redis://127.0.0.1:6379/15"


def registry(*entities: type[Entity], redis: bool = True) -> Registry:
    r = Registry(key_prefix="registrychecks")
    r.register_mysql(MYSQL_URL)
    if redis:
        r.register_redis(REDIS_URL)
    r.register_entity(*entities)
    return r


def config_error(r: Registry) -> str:
    with pytest.raises(ConfigError) as info:
        r.validate()
    return str(info.value)


class Fine(Entity, redis_cache=True):
    name: str = Field(max_length=20)


def test_a_consistent_registry_validates_into_an_engine() -> None:
    engine = registry(Fine).validate()
    try:
        assert engine.schema(Fine).table == "fine"
    finally:
        engine.close()


class InReports(Entity, mysql_pool="reports"):
    name: str = Field(max_length=20)


def test_unknown_mysql_pool_names_the_entity_and_how_to_register_it() -> None:
    message = config_error(registry(InReports))
    assert "InReports" in message
    assert "register_mysql(url, pool='reports')" in message


class CachedElsewhere(Entity, redis_cache="sessions"):
    name: str = Field(max_length=20)


def test_unknown_redis_pool_names_the_entity_and_how_to_register_it() -> None:
    message = config_error(registry(CachedElsewhere))
    assert "CachedElsewhere" in message
    assert "register_redis(url, pool='sessions')" in message


class WithList(Entity):
    tags: list[int]


def test_unsupported_annotation_names_entity_field_and_the_supported_types() -> None:
    message = config_error(registry(WithList))
    assert "WithList" in message
    assert "'tags'" in message
    assert "list[int]" in message
    assert "Decimal" in message and "Reference[Entity]" in message  # what to use instead


def test_a_real_union_is_an_unsupported_annotation() -> None:
    class Either(Entity):
        value: int | str = 0

    message = config_error(registry(Either))
    assert "Either" in message and "'value'" in message and "unsupported" in message


class First(Entity, table="shared_table"):
    name: str = Field(max_length=20)


class Second(Entity, table="shared_table"):
    title: str = Field(max_length=20)


def test_two_entities_on_one_table_name_both_and_the_fix() -> None:
    message = config_error(registry(First, Second))
    assert "First" in message and "Second" in message
    assert "'shared_table'" in message
    assert "table=" in message


class Owner(Entity):
    name: str = Field(max_length=20)


class Pet(Entity):
    owner: Reference[Owner] | None = None


def test_reference_to_an_unregistered_entity_says_to_register_it() -> None:
    message = config_error(registry(Pet))
    assert "Pet.owner" in message
    assert "register_entity(Owner)" in message


def test_reference_to_an_unregistered_entity_defined_in_a_function_names_the_field() -> None:
    class Hidden(Entity):
        name: str = Field(max_length=20)

    class Seeker(Entity):
        target: Reference[Hidden] | None = None

    message = config_error(registry(Seeker))
    assert "Seeker" in message and "'target'" in message and "Hidden" in message


class Left(Entity, async_group="split"):
    name: str = Field(max_length=20)


class Right(Entity, async_group="split", mysql_pool="other"):
    name: str = Field(max_length=20)


def test_an_async_group_spread_over_two_mysql_pools_names_both_and_the_fix() -> None:
    r = registry(Left, Right)
    r.register_mysql(OTHER_MYSQL_URL, pool="other")
    message = config_error(r)
    assert "'split'" in message
    assert "Left" in message and "Right" in message
    assert "'default'" in message and "'other'" in message
    assert "async_group" in message


def test_entities_on_two_pools_in_their_own_groups_validate() -> None:
    class RightAlone(Entity, async_group="split_other", mysql_pool="other"):
        name: str = Field(max_length=20)

    r = registry(Left, RightAlone)
    r.register_mysql(OTHER_MYSQL_URL, pool="other")
    engine = r.validate()
    try:
        assert engine.async_groups == {"split": "default", "split_other": "other"}
    finally:
        engine.close()


class Shop(Entity):
    name: str = Field(max_length=20)


class CachedRefWithoutRedis(Entity):
    shop: Reference[Shop] | None = Field(cached=True)


def test_cached_reference_without_redis_cache_names_the_field_and_the_fix() -> None:
    message = config_error(registry(Shop, CachedRefWithoutRedis))
    assert "CachedRefWithoutRedis.shop" in message
    assert "redis_cache=True" in message


class AllWithoutRedis(Entity, cache_all=True):
    name: str = Field(max_length=20)


def test_cache_all_without_redis_cache_says_to_turn_it_on() -> None:
    message = config_error(registry(AllWithoutRedis))
    assert "AllWithoutRedis" in message and "redis_cache=True" in message


class LocalOnly(Entity, local_cache=True):
    name: str = Field(max_length=20)


def test_local_cache_without_any_redis_pool_says_to_register_one() -> None:
    message = config_error(registry(LocalOnly, redis=False))
    assert "LocalOnly" in message and "register_redis" in message


def test_no_mysql_pool_says_to_register_one() -> None:
    r = Registry()
    r.register_entity(Fine)
    assert "register_mysql" in config_error(r)


@pytest.mark.parametrize(
    "url", ["postgres://root@127.0.0.1/db", "mysql://root@127.0.0.1:3306/", "127.0.0.1:3306"]
)
def test_a_bad_mysql_url_is_refused_when_registered(url: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(repr(url))):
        Registry().register_mysql(url)


def test_a_bad_redis_url_is_refused_when_registered() -> None:
    with pytest.raises(ConfigError, match="redis://"):
        Registry().register_redis("127.0.0.1:6379")


@pytest.mark.parametrize("prefix", ["", "a b", "{x}"])
def test_a_key_prefix_that_breaks_the_key_layout_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="key_prefix"):
        Registry(key_prefix=prefix)


def test_register_entity_refuses_what_is_not_an_entity_class() -> None:
    with pytest.raises(ConfigError, match="Entity subclasses"):
        Registry().register_entity(int)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Registry().register_entity(Entity)


def test_an_engine_refuses_entities_it_was_not_built_with() -> None:
    engine = registry(Fine).validate()
    try:
        with pytest.raises(ConfigError, match="Shop is not registered"):
            engine.new_context().get_by_id(Shop, 1)
    finally:
        engine.close()
