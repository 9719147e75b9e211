# One entry point for every check: CI calls exactly these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck check bench chaos worker worker-dramatiq flower clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## make demo: flush 20,000 entities asynchronously through a real Celery worker, end to end
demo: $(STAMP)
	$(BIN)/python -m demo

## make test: the whole suite against the real MariaDB, Redis and Celery workers
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check beeorm_celery tests bench demo worker worker_dramatiq.py shop
	$(BIN)/ruff format --check beeorm_celery tests bench demo worker worker_dramatiq.py shop

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## make bench: benchmarks against raw PyMySQL and naive Celery baselines, table + bench/results.json
##   BENCH_QUICK=1: under five minutes; BENCH_PROFILE=1: profiles in bench/profiles/;
##   BENCH_ONLY=latency,applied: some phases only (bench/README.md)
bench: $(STAMP)
	$(BIN)/python -m bench

## make chaos: a bounded fault run (kills, MariaDB restarts, locks, garbage) checked against an oracle
##   BACKEND=dramatiq: the same run with Dramatiq workers (worker processes SIGKILLed, Dramatiq queue garbage)
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(if $(BACKEND),--backend $(BACKEND))

worker: $(STAMP)
	$(BIN)/celery -A worker worker -Q beeorm.default,beeorm.catalog,beeorm.orders -c 2 -E --loglevel=info

## make worker-dramatiq: the example Dramatiq worker (worker_dramatiq.py) on the same queues
worker-dramatiq: $(STAMP)
	$(BIN)/dramatiq worker_dramatiq --processes 2 --threads 4 --queues beeorm.default beeorm.catalog beeorm.orders

## make flower: Flower on 127.0.0.1:5555. Its HTTP API (/api/...) answers 401 unless it has
##   authentication or FLOWER_UNAUTHENTICATED_API is set; on the loopback only, this target sets it.
flower: $(STAMP)
	FLOWER_UNAUTHENTICATED_API=$${FLOWER_UNAUTHENTICATED_API:-true} \
	  $(BIN)/celery -A worker flower --address=127.0.0.1 --port=5555

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
