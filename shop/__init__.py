"""An example application using beeorm-celery: a small shop catalogue and its orders."""
