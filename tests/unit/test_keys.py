"""The Redis key layout: one prefix, and hash tags that keep what one operation touches together."""

from __future__ import annotations

from beeorm_celery.keys import Keys, collation_key
from tests.support.models import Category


def test_a_groups_keys_share_one_hash_tag_under_the_prefix():
    keys = Keys("shop")
    group_keys = [
        keys.log("catalog"),
        keys.epoch("catalog"),
        keys.trigger("catalog"),
        keys.dead("catalog"),
        keys.dead_index("catalog"),
        keys.head_failure("catalog"),
    ]
    assert group_keys == [
        "shop:{g:catalog}:log",
        "shop:{g:catalog}:epoch",
        "shop:{g:catalog}:trigger",
        "shop:{g:catalog}:dead",
        "shop:{g:catalog}:dead:at",
        "shop:{g:catalog}:fail",
    ]
    assert keys.invalidation_channel == "shop:invalidate"


def test_entity_keys_are_tagged_by_table_and_versioned_by_layout(offline):
    keys = Keys("shop")
    schema = offline.schema(Category)
    assert keys.entity(schema, 5) == f"shop:{{category}}:e:{schema.layout_hash}:5"
    assert keys.id_counter(schema) == "shop:{category}:id"
    assert keys.unique(schema, "name", ["Café "]) == keys.unique(schema, "name", ["cafe"])
    assert keys.unique(schema, "name", ["cafe"]) != keys.unique(schema, "name", ["cafes"])


def test_collation_folds_case_accents_and_trailing_spaces_only():
    assert collation_key("Straße  ") == collation_key("STRASSE")
    assert collation_key("Crème") == collation_key("creme")
    assert collation_key("a b") != collation_key("ab")
