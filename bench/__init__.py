"""Benchmarks of beeorm-celery against raw PyMySQL and naive Celery baselines: ``make bench``.

Every figure is measured in one run on the local MariaDB and Redis, so the ratios printed at
the end compare numbers taken under the same load. See bench/README.md.
"""
