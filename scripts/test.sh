#!/usr/bin/env bash
# The test command of the README (make test): unit and integration tests, the smoke book, nbval, ruff (rules and layout).
set -uo pipefail
cd "$(dirname "$0")/.."
export LMCONV_TEST_HOME=${LMCONV_TEST_HOME:-$(mktemp -d /tmp/lmconv-test.XXXXXX)}
status=0
python -m ruff check . || status=1
python -m ruff format --check . || status=1  # the code's layout is ruff's (run `make lint` to see, `ruff format .` to fix)
# Two workers (pytest-xdist), each test file whole on one: the smoke book builds on the worker that runs
# test_book.py (its only reader, conftest.py) while the other runs the rest; each worker trains the smoke
# suites in its own data home.
python -m pytest -q -n 2 --dist loadfile --durations=15 tests "$@"
rc=$?
# pytest exit 5 means "no tests were collected": that is a failure of the set-up, never a pass.
if [ $rc -eq 5 ]; then echo "[test] pytest collected no tests"; rc=1; fi
[ $rc -ne 0 ] && status=1
exit $status
