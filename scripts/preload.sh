#!/usr/bin/env bash
# Prints LD_PRELOAD=<tcmalloc> when tcmalloc is installed, else nothing. The Makefile calls it when each command
# runs (not when make reads the Makefile), so the first command after `make setup` installed tcmalloc gets it too.
# LMCONV_TCMALLOC_CANDIDATES (space-separated paths) replaces the usual locations (tests).
for lib in ${LMCONV_TCMALLOC_CANDIDATES:-/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4}; do
  if [ -f "$lib" ]; then echo "LD_PRELOAD=$lib"; exit 0; fi
done
