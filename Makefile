# Everyday commands. `make demo` and `make test` do all set-up on a fresh Debian machine (as root).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The demo installs the product and the lab only; the tests add their toolchain on top.
DEMO_STAMP := $(VENV)/.demo-installed
STAMP  := $(VENV)/.installed
# What the lab fleet needs to run: sshd in namespaces, nftables, and the tools the probe uses.
DEMO_PACKAGES := openssh-server openssh-client nftables iproute2 curl wget openssl
# The site tests start a real broker.
SYSTEM_PACKAGES := $(DEMO_PACKAGES) shellcheck redis-server
# Kerberos tests: a throwaway MIT realm (kdc, kadmin.local, kinit), and the headers and
# compiler the Kerberos Python bindings build with.
SYSTEM_PACKAGES += krb5-kdc krb5-admin-server krb5-user libkrb5-dev gcc python3-dev
# The HTML report's tests in a real browser: Debian's headless Chromium (driven by the
# playwright package, which downloads no browser of its own) and poppler-utils to read the
# printed PDF back.
SYSTEM_PACKAGES += chromium poppler-utils
LAB_DIR ?= demo
PY_SOURCES := auditor lab/auditor_lab tests bench

.PHONY: demo test lint typecheck unit sysdeps demo-sysdeps install-packages venv demo-venv demo-sites bench bench-sites fuzz clean lab-down

# System packages, installed only when one is missing.
sysdeps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(SYSTEM_PACKAGES)"

demo-sysdeps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEMO_PACKAGES)"

install-packages:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml lab/pyproject.toml
	@# The Kerberos bindings in the test extras compile against libkrb5-dev.
	@$(MAKE) --no-print-directory sysdeps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' -e lab
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml lab/pyproject.toml
	@$(MAKE) --no-print-directory demo-sysdeps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e . -e lab
	touch $(DEMO_STAMP)

venv: $(STAMP)

demo-venv: $(DEMO_STAMP)

lint: venv
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)

typecheck: venv
	$(BIN)/mypy

unit: venv sysdeps
	$(BIN)/pytest -q

test: sysdeps venv lint typecheck unit

demo: demo-venv
	$(BIN)/auditor-lab up --dir $(LAB_DIR)
	AUDITOR_SSH_PASSWORD="$$(cat $(LAB_DIR)/ssh_password)" \
	AUDITOR_WINRM_PASSWORD="$$(cat $(LAB_DIR)/winrm_password)" \
	$(BIN)/audit --inventory $(LAB_DIR)/lab.ini --known-hosts $(LAB_DIR)/known_hosts \
	  --out $(LAB_DIR)/report --force --platform US3 --timeout 20 || test $$? -le 3
	@echo
	@echo "Reports: $(LAB_DIR)/report/report.html  (also report.csv, report.json, junit.xml, results.jsonl)"
	@echo "The lab stays up for exploring; remove it with: make lab-down"

# The lab with sites: a broker and site runners; prints the one command that audits the
# fleet through them.
demo-sites: demo-venv
	@$(MAKE) --no-print-directory install-packages PACKAGES="redis-server"
	$(BIN)/auditor-lab up --dir $(LAB_DIR) --sites

lab-down: demo-venv
	$(BIN)/auditor-lab down --dir $(LAB_DIR)

# The auditor against its floors and Ansible, the scale and fleet scenarios, the browser,
# then what the probe costs the audited hosts.
bench: sysdeps venv
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.probe_cost

# A site run through the broker against a local run on the same 200-host lab.
bench-sites: sysdeps venv
	$(BIN)/python -m bench.sites

# The property-based tests with 5,000 examples each instead of make test's 200.
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q tests/security/test_fuzz_parsers.py \
	  tests/inventory tests/reporters/test_reporters_fuzz.py tests/probes/test_powershell.py \
	  tests/security/test_results_fuzz.py tests/probes/test_scrub.py \
	  tests/transports/test_ssh_config_fuzz.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
