# borgflow: `make up` runs the whole system, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Another apt run (unattended upgrades, a second checkout installing) holds dpkg's lock: wait for it.
APT    := apt-get -o DPkg::Lock::Timeout=600

.PHONY: install up test lint format bench clean browser rclone dbclients

install: $(STAMP) rclone dbclients

$(STAMP): pyproject.toml
	@scripts/system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

up: install
	$(BIN)/borgflow up $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser tests drive Debian's chromium (through the playwright package, never its own
# browser download); without chromium they skip and say so.
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || { \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser tests"; \
	    $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq chromium >/dev/null; \
	  else \
	    echo "no chromium: the browser tests will be skipped (install it: sudo apt-get install -y chromium)"; \
	  fi; }

# s3_sync jobs run rclone ($BORGFLOW_RCLONE, else Debian's rclone on PATH): installed here
# when missing and root; otherwise said how, and the s3_sync tests skip.
rclone:
	@command -v "$${BORGFLOW_RCLONE:-rclone}" >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing rclone for s3_sync jobs"; \
	    $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq rclone >/dev/null; \
	  else \
	    echo "no rclone: s3_sync jobs will fail and their tests skip (install it: sudo apt-get install -y rclone)"; \
	  fi; }

test: install lint browser
	$(BIN)/pytest --durations=25 $(PYTEST_ARGS)

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The control plane against DESIGN.md's budget: one table, artifacts/bench.json. The other
# benches (bench.backup_overhead, executor_rates, scheduler_notifier, fault_table) run alone.
bench: install
	$(BIN)/python -m bench.control_plane $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# A plan's database dumps and restores run PostgreSQL's and MariaDB's client tools (pg_dump,
# pg_restore, createdb; mariadb-dump, mariadb): Debian's, installed here when missing and root.
dbclients:
	@{ command -v pg_dump >/dev/null 2>&1 && command -v mariadb-dump >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing postgresql-client and mariadb-client for database dumps"; \
	    $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq postgresql-client mariadb-client >/dev/null; \
	  else \
	    echo "no database clients: dumps fail (install them: sudo apt-get install -y postgresql-client mariadb-client)"; \
	  fi; }
