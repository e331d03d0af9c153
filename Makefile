# The two commands a newcomer needs: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WAREHOUSE ?= duckdb:///segmentum.duckdb
DEMO_DIR  ?= demo-data
DEMO_CUSTOMERS ?= 5000
SERVE ?= 1

.PHONY: run test test-spark install java openssl chromium postgresql lint typecheck unit bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,spark,postgres]"
	touch $(STAMP)

install: $(STAMP)

# Spark needs a Java runtime; install Debian's when the machine has none.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "Java not found: installing openjdk-17-jre-headless with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; }

# The email tests start an SMTP server with STARTTLS on a certificate made by openssl.
openssl:
	@command -v openssl >/dev/null 2>&1 || { \
	  echo "openssl not found: installing it with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }

# The dashboard tests drive Debian's Chromium headless through Playwright.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Chromium not found: installing it with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The PostgreSQL tests start their own server (initdb + pg_ctl) from Debian's packages.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "PostgreSQL not found: installing it with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

run: install
	$(BIN)/segmentum demo-data --out $(DEMO_DIR) --customers $(DEMO_CUSTOMERS)
	$(BIN)/segmentum run --warehouse $(WAREHOUSE) --data $(DEMO_DIR)
	# Past monthly snapshots, so the dashboard's migration, forecast and "what changed" have content.
	$(BIN)/segmentum history backfill --warehouse $(WAREHOUSE) --periods 6
	@if [ "$(SERVE)" = "1" ]; then \
	  echo "Serving the dashboard (Ctrl+C to stop; make run SERVE=0 to skip)"; \
	  $(BIN)/segmentum serve --new-key --warehouse $(WAREHOUSE); fi

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install java openssl chromium postgresql
	# One OpenMP/BLAS thread per process: tests run beside the servers they start, and spinning
	# threads on a busy two-core machine make a model fit 15 times slower.
	# Two workers (pytest-xdist), one test file each at a time: module fixtures are built once.
	# The 30 slowest tests and fixtures are listed at the end (where the suite's time goes).
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile \
		--durations=30 $(PYTEST_ARGS)

test: lint typecheck unit

# Every test case on the local Spark session too (make test runs one per layer: spark_core).
# The Spark cases `make test` leaves out (it runs one per layer, marked spark_core): about
# 8 minutes on two cores. CI runs them after `make test`.
test-spark: install java
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile \
		-m "spark and not spark_core" --all-spark

bench: install java
	cd benchmarks && ../$(BIN)/python run_all.py

clean:
	rm -rf $(VENV) segmentum.duckdb segmentum.duckdb.wal $(DEMO_DIR) bench-data
