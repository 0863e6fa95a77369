# The two commands: `make dev` starts Mandate with its embedded stack; `make test` runs every test.
# Both install what they need (venv, Python deps, the OpenFGA binary) and are fast the second time.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: dev test install browser

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)
	$(VENV)/bin/mandate install-tools

dev: install
	$(VENV)/bin/mandate dev

# Headless Chromium and its driver for the approver page's browser test (Debian packages).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

test: install browser
	$(VENV)/bin/python -m pytest
