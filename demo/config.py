"""What the demo runs against and how big it is: read once, at the edge, from the environment.

BEEORM_DEMO_MYSQL_URL   default mysql://root@127.0.0.1:3306/beeorm_demo (dropped and recreated!)
BEEORM_DEMO_REDIS_URL   default redis://127.0.0.1:6379/0 (only keys under beeorm_demo: are touched)
BEEORM_DEMO_BROKER_URL  default: the Redis URL (only keys under beeorm_demo:q: are touched); the
                        broker of both backends (--backend celery | dramatiq)

The database name is also the Redis key prefix, so two demos with two database names can run
side by side on the same servers.
BEEORM_SIGNING_SECRET   passed through: the demo signs batches when the shop's workers would
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/beeorm_demo"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
QUEUES = ("beeorm.catalog", "beeorm.orders", "beeorm.default")

# The demo drops its database on every run: refuse names that do not say they are a demo's.
_SAFE_DATABASE = re.compile(r"^[A-Za-z0-9_]*demo[A-Za-z0-9_]*$")


class ConfigProblem(Exception):
    """A setting the demo cannot work with; the message says which and why."""


@dataclass(frozen=True)
class MySQLServer:
    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_url(cls, url: str) -> MySQLServer:
        parsed = urlparse(url)
        if parsed.scheme not in ("mysql", "mariadb"):
            raise ConfigProblem(
                f"BEEORM_DEMO_MYSQL_URL={url!r}: expected mysql://user@host:port/db"
            )
        database = parsed.path.lstrip("/")
        if not _SAFE_DATABASE.match(database):
            raise ConfigProblem(
                f"BEEORM_DEMO_MYSQL_URL names database {database!r}; the demo drops and recreates "
                "its database, so its name must contain 'demo' (e.g. beeorm_demo)"
            )
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 3306,
            user=unquote(parsed.username or "root"),
            password=unquote(parsed.password or ""),
            database=database,
        )

    @property
    def safe_url(self) -> str:
        """The URL without the password, for printing."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class DemoConfig:
    mysql_url: str
    redis_url: str
    broker_url: str
    signing_secret: str | None
    entities: int  # how many entities the bulk run flushes asynchronously
    per_flush: int  # entities per flush_async() call: a web request's worth
    speed_calls: int  # flush() and flush_async() calls of each shape in the speed comparison
    keep: bool  # leave the database, keys and worker log for a look afterwards
    backend: str = "celery"  # or "dramatiq": which task queue carries the wake-ups
    worker_ready_timeout_s: float = 60.0
    land_timeout_s: float = 45.0  # the longest the demo waits for the worker to catch up

    @property
    def mysql(self) -> MySQLServer:
        return MySQLServer.from_url(self.mysql_url)

    @property
    def key_prefix(self) -> str:
        """Every Redis key of the demo's engines starts with this and a colon."""
        return self.mysql.database

    @property
    def broker_key_prefix(self) -> str:
        """Every broker key starts with this. Under the data prefix, so one SCAN finds all the
        demo owns; data keys never start with "q:" ("<prefix>:{table}:...", "<prefix>:invalidate").
        """
        return f"{self.key_prefix}:q:"

    @property
    def worker_env(self) -> dict[str, str]:
        """The variables shop/orm.py, celeryconfig.py and worker_dramatiq.py read, pointing at
        the demo's data."""
        env = {
            "BEEORM_MYSQL_URL": self.mysql_url,
            "BEEORM_REDIS_URL": self.redis_url,
            "BEEORM_KEY_PREFIX": self.key_prefix,
            "BEEORM_BROKER_URL": self.broker_url,
            "BEEORM_BROKER_KEY_PREFIX": self.broker_key_prefix,
            "BEEORM_DRAMATIQ_BROKER_URL": self.broker_url,
            # Dramatiq's keys under the same prefix, so the demo's clean-up finds them too
            "BEEORM_DRAMATIQ_NAMESPACE": f"{self.broker_key_prefix}dramatiq",
        }
        if self.signing_secret:
            env["BEEORM_SIGNING_SECRET"] = self.signing_secret
        return env


def load(
    entities: int = 20_000,
    per_flush: int = 10,
    speed_calls: int = 100,
    keep: bool = False,
    backend: str = "celery",
) -> DemoConfig:
    redis_url = os.environ.get("BEEORM_DEMO_REDIS_URL", DEFAULT_REDIS_URL)
    config = DemoConfig(
        mysql_url=os.environ.get("BEEORM_DEMO_MYSQL_URL", DEFAULT_MYSQL_URL),
        redis_url=redis_url,
        broker_url=os.environ.get("BEEORM_DEMO_BROKER_URL", redis_url),
        signing_secret=os.environ.get("BEEORM_SIGNING_SECRET") or None,
        entities=entities,
        per_flush=per_flush,
        speed_calls=speed_calls,
        keep=keep,
        backend=backend,
    )
    config.mysql  # noqa: B018 - parse now, so a bad URL stops the demo before anything starts
    if not config.broker_url.startswith(("redis://", "rediss://")):
        raise ConfigProblem(
            f"BEEORM_DEMO_BROKER_URL={config.broker_url!r}: the demo isolates its queues with a "
            "Redis key prefix, so it needs a Redis broker"
        )
    if per_flush < 2 or entities < per_flush:
        raise ConfigProblem("--per-flush must be at least 2 (both groups) and at most --entities")
    return config
