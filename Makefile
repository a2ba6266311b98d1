# kommunmoln: one Makefile for everything. Run `make help` for the targets.
# The virtual environment (.venv) and the CDK CLI (node_modules, pinned in package.json)
# are created only when missing or when their pins change, so a second run is fast.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
CDK_STAMP := node_modules/.installed
# Supply-chain tools (make lock, make sbom, the SBOM test) in their own venv: requirements-tools.txt
TOOLS_VENV := build/tools-venv
TOOLS_STAMP := $(TOOLS_VENV)/.installed
CDK := node_modules/.bin/cdk
PYTEST_ARGS ?=
# Dated test outcomes with the git commit; `make report` shows them as "proven by" (not run without it).
TEST_RESULTS ?= build/test-results.json

# Node 20 is past its end of life; jsii prints a banner on every call without this.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

# Deployment target: `make deploy AWS_PROFILE=kommun REGION=eu-north-1`
REGION ?=
CDK_ARGS := $(if $(AWS_PROFILE),--profile $(AWS_PROFILE),) $(if $(REGION),-c region=$(REGION),) $(CONTEXT)
# The same context for the preflight checks (`-c key=value` -> `--context key=value`).
PREFLIGHT_ARGS := $(if $(AWS_PROFILE),--profile $(AWS_PROFILE),) $(if $(REGION),--context region=$(REGION),) $(patsubst -c,--context,$(CONTEXT))
# cdk asks before deploying IAM or security-group broadening, which needs a terminal. Without one
# (CI, a pipeline), say what to do instead: review `make diff` and pass APPROVAL=never.
APPROVAL ?= $(shell [ -t 0 ] && echo broadening || echo none-without-terminal)

.PHONY: help install demo test synth preflight tiers diff deploy verify-live destroy lint format bench report guardrails audit system-deps clean lock sbom drills

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV_STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

$(CDK_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV_STAMP) $(CDK_STAMP) ## Create .venv and install the CDK CLI (only when missing)

system-deps: ## Install SoftHSM2 (PKCS#11 tests) from Debian's packages when missing
	@if [ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing softhsm2 ..."; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null; \
	else echo "note: SoftHSM2 is missing and cannot be installed here (not root); PKCS#11 tests will be skipped"; fi

demo: $(VENV_STAMP) system-deps ## Synthesize with the gates, then run both use cases end to end on a local AWS emulation
	$(PY) -m usecases.demo

test: $(VENV_STAMP) $(CDK_STAMP) $(TOOLS_STAMP) system-deps ## Run the whole test suite (starts its own moto server)
	$(PY) -m tests.run_with_moto_server -- $(PY) -m pytest --results-file=$(TEST_RESULTS) $(PYTEST_ARGS)

synth: $(VENV_STAMP) $(CDK_STAMP) ## Synthesize all stacks with the compliance gates into cdk.out/
	$(CDK) synth --quiet $(CONTEXT)
	@echo "Templates in cdk.out/:"; ls cdk.out/*.template.json

preflight: $(VENV_STAMP) $(CDK_STAMP) ## Read-only checks of the account before deploying (AWS_PROFILE, REGION, CONTEXT as for deploy)
	$(CDK) synth --quiet $(filter-out --profile $(AWS_PROFILE),$(CDK_ARGS))
	$(PY) -m deploy.preflight $(PREFLIGHT_ARGS)

tiers: $(VENV_STAMP) ## Which tiers a Region offers, from the SDK's endpoint data (REGION=eusc-de-east-1; no credentials)
	$(PY) -m deploy.preflight --tiers $(or $(REGION),eu-north-1)

diff: $(VENV_STAMP) $(CDK_STAMP) ## Show what a deploy would change (review it before APPROVAL=never)
	$(CDK) diff --all $(CDK_ARGS)

deploy: preflight ## Deploy all stacks after `make preflight` (AWS_PROFILE=..., REGION=..., CONTEXT="-c key=value")
	@if [ "$(APPROVAL)" = none-without-terminal ]; then \
	  echo "make deploy: no terminal, so cdk cannot ask to approve IAM/security changes. Review 'make diff', then run: make deploy APPROVAL=never" >&2; exit 2; fi
	$(CDK) deploy --all --require-approval $(APPROVAL) $(CDK_ARGS)

verify-live: $(VENV_STAMP) $(CDK_STAMP) ## Opt-in: deploy to a SANDBOX account in workshop mode, check live, report, destroy (YES=1 skips the prompt)
	$(PY) -m deploy.verify_live $(if $(AWS_PROFILE),--profile $(AWS_PROFILE),) $(if $(REGION),--region $(REGION),) $(if $(YES),--yes,) $(VERIFY_ARGS)

destroy: $(VENV_STAMP) $(CDK_STAMP) ## Delete the stacks (stateful resources are retained unless workshop_mode)
	$(CDK) destroy --all $(CDK_ARGS)

lint: $(VENV_STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV_STAMP) ## Format the code with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV_STAMP) ## Run the benchmarks, regenerate docs/BENCHMARKS.md (QUICK=1: small sizes, one run)
	$(PY) -m bench.run $(if $(QUICK),--quick,)

report: $(VENV_STAMP) ## Compliance report (docs/compliance-report.md/.html) and PDF/A in sv+en: report, fact sheets, DPIA annex (build/report/)
	$(PY) -m kommunmoln.compliance.report --results $(TEST_RESULTS) --pdf-dir build/report
	$(PY) -m kommunmoln.compliance.pdfa build/report/*.pdf

guardrails: $(VENV_STAMP) ## Write the residency SCP set for the organisation (build/residency-scp.json)
	$(PY) -m kommunmoln.compliance.guardrails

audit: $(VENV_STAMP) ## Read-only check of the deployed account against the OSL pack (needs credentials)
	$(PY) -m kommunmoln.compliance.audit

$(TOOLS_STAMP): requirements-tools.txt
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet -r requirements-tools.txt
	@touch $@

lock: $(TOOLS_STAMP) ## Re-resolve requirements-lock.txt: every dependency pinned with its PyPI SHA-256 hashes
	$(TOOLS_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --output-file requirements-lock.txt requirements-dev.txt

sbom: $(TOOLS_STAMP) $(VENV_STAMP) ## CycloneDX SBOM of the locked dependencies (build/sbom.json), checked against the lock
	$(TOOLS_VENV)/bin/cyclonedx-py requirements --pyproject pyproject.toml --of JSON -o build/sbom.json requirements-lock.txt
	$(PY) -m kommunmoln.compliance.supply_chain --sbom build/sbom.json

drills: $(VENV_STAMP) ## Archive drills on a local emulation: decrypt-and-deliver, escrow recovery, restore (build/drills.json)
	$(PY) -m kommunmoln.compliance.drills --out build/drills.json

clean: ## Remove build output (keeps .venv and node_modules)
	rm -rf cdk.out .pytest_cache .ruff_cache
