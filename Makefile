# The NJUPT international-office assistant. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
RASA   := RASA_TELEMETRY_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/rasa
MODEL  := models/njupt.tar.gz
STAMP  := $(VENV)/.installed
# Everything the model is trained from: a change to any of these retrains.
TRAINING := config.yml domain.yml bot/plugins/nlu.py bot/core/languages.py data/languages.yml \
            $(wildcard data/nlu/*.yml data/rules/*.yml)

export RASA_TELEMETRY_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help install run train test lint browser haproxy validate evaluate bench fuzz screenshot staff-screenshot swapbench publish clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with Python 3.10 and install the pinned dependencies

$(STAMP): pyproject.toml
	@py=$$(.ci/find-python310) || exit 1; \
	  echo "Creating $(VENV) with $$py"; \
	  rm -rf $(VENV) && $$py -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade "pip<25" setuptools wheel
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(VENV)/bin/pip check
	@touch $@

$(MODEL): $(STAMP) $(TRAINING)
	$(RASA) train --config config.yml --domain domain.yml --data data/nlu data/rules \
	  --out models --fixed-model-name njupt
	@touch $@

train: $(MODEL) ## train the model when it is missing or older than its data/config

run: $(MODEL) ## install, train if needed, start the action and Rasa servers (Ctrl-C stops; REPLICAS=2: behind HAProxy)
	@case "$${REPLICAS:-1}" in 0|1) ;; *) .ci/need-haproxy ;; esac
	$(VENV)/bin/bot run

validate: $(STAMP) ## check the data: facts, texts and examples in every language, rasa data validate
	$(PY) -m bot.tools.datacheck
	$(RASA) data validate --config config.yml --domain domain.yml --data data/nlu data/rules --fail-on-warnings

test: lint browser haproxy $(MODEL) ## install, train if needed, lint, run the whole test suite
	$(VENV)/bin/pytest -q

lint: $(STAMP) ## ruff check and ruff format --check over the whole tree
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

browser: ## install Debian's Chromium and the screenshot fonts when missing (as root)
	@.ci/need-browser

haproxy: ## install Debian's HAProxy when missing (as root): the load balancer of REPLICAS
	@.ci/need-haproxy

evaluate: $(MODEL) ## NLU accuracy per language on the held-out set -> reports/evaluation.md
	$(PY) -m bot.tools.evaluate

bench: $(MODEL) ## training time, start-up, latency and memory -> reports/bench.md
	$(PY) -m bot.tools.bench

fuzz: $(MODEL) ## 10,000 hostile inputs (Hypothesis) against a stack of its own -> reports/fuzz.md
	$(PY) -m bot.tools.fuzz --examples 10000 --seed 1

screenshot: browser $(MODEL) ## the web chat in a conversation and with the staff, in Chromium -> docs/screenshot.png, docs/handoff.png
	$(PY) -m bot.tools.screenshot
	$(PY) -m bot.tools.screenshot --handoff

staff-screenshot: browser $(MODEL) ## the staff console's inbox, in Debian's Chromium -> docs/staff-inbox.png
	$(PY) -m bot.tools.staff_screenshot

swapbench: $(MODEL) ## a model swap under a load of 10 users: failures and latency -> reports/swap.md
	$(PY) -m bot.tools.swapbench --users 10

publish: $(STAMP) ## validate, train, guard and swap the new model into the running bot (bot publish)
	$(VENV)/bin/bot publish

clean: ## remove the virtualenv, models and run-time state
	rm -rf $(VENV) models var reports
