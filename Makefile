# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app wsgi

.PHONY: run test bench lint venv init worker clean translations

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# Prints the same development test key on every run (wpotp dev-key); NEW_DEV_KEY=1 make run makes a new one.
run: venv
	bash scripts/run.sh

test: venv
	bash scripts/test.sh

# Not part of `make test`: prints req/s, latency and ratios to a bare-Flask ceiling (docs/performance.md).
bench: venv
	bash scripts/bench.sh $(ARGS)

# The console's catalogues (wpotp/translations): pull new wording from the code into each .po,
# then compile the .mo files the server reads (committed; tests/console/test_i18n.py checks both).
translations: venv
	$(VENV)/bin/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --omit-header \
		-o wpotp/translations/messages.pot wpotp
	$(VENV)/bin/pybabel update -i wpotp/translations/messages.pot -d wpotp/translations --ignore-obsolete \
		--width 120
	$(VENV)/bin/pybabel compile -d wpotp/translations

lint: venv
	$(VENV)/bin/ruff check .

init: venv
	$(FLASK) wpotp init

worker: venv
	$(FLASK) wpotp worker

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
