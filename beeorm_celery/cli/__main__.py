"""``python -m beeorm_celery.cli``: the same as the ``beeorm-celery`` console script."""

from beeorm_celery.cli import main

main()
