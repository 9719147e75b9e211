"""``make demo``: the async flush end to end, with a real Celery worker process.

Run it with ``python -m demo`` (``--help`` for the options). It owns a MySQL database
(``beeorm_demo`` by default), the Redis keys under ``beeorm_demo:`` and the broker keys under
``beeorm_demo:q:``; it resets them when it starts and removes them when it ends, so it can run
next to anything else on the same servers, and again. See ``demo/config.py`` for the settings.
"""
