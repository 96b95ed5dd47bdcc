# distsnn: `make demo` and `make test` set everything up first (see launch/setup.sh).
#
#   make setup   create/update the virtual environment ($(VENV)) and build/install pygenn
#   make test    setup, then run the test suite      (PYTEST_ARGS="-k doctor -x" to narrow it)
#   make demo    setup, then train, convert and evaluate the digits demo on 2 MPI ranks
#   make clean   remove the virtual environment and build/test leftovers (not the pygenn wheel cache)
#
# Variables (command line or environment):
#   GENN_SOURCE           GeNN tarball, source directory or URL (default: pinned GitHub archive)
#   DISTSNN_GENN_BACKEND  auto|cpu|cuda
#   VENV                  virtual environment path (default: .venv)
#   PYTHON                interpreter that creates the venv (default: python3)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
PYTEST_ARGS ?=
NP ?= 2

export GENN_SOURCE
export DISTSNN_GENN_BACKEND
export VENV
export PYTHON

.PHONY: help setup test demo clean

help:
	@awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' Makefile

setup:
	bash launch/setup.sh

# pytest exits 5 when it collects no tests; make fails on any non-zero exit, so an empty
# selection fails `make test` too.
test: setup
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/distsnn demo --ranks $(NP)

clean:
	rm -rf -- "$(VENV)" build .pytest_cache distsnn.egg-info demo-output
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*_CODE' \) -type d -prune -exec rm -rf {} +
	@echo "kept the pygenn wheel cache: $${XDG_CACHE_HOME:-$$HOME/.cache}/distsnn/pygenn (delete it to force a rebuild)"
