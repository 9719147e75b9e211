"""The example Celery app.

Run it with ``celery -A worker worker -Q beeorm.catalog,beeorm.orders,beeorm.default``.
"""

from __future__ import annotations

from celery import Celery

from beeorm_celery.celery import install
from shop.orm import engine

app = Celery("worker")
app.config_from_object("celeryconfig")
install(app, engine)
