"""A long-lived Pacemaker evaluator for autopipe: pyace's PyACECalculator with the
potential and its active set. One JSON line in per structure
({"cell": 3x3 Å, "positions": Nx3 Å, "numbers": [Z], "pbc": [b, b, b]}), one JSON line out
({"energy_ev", "forces_ev_per_a", "stress_ev_per_a3" (Voigt, ASE's sign, or null), "gamma"}),
or {"error": "..."}; a first line {"ready": true} once the potential is loaded.

usage: python pace_eval.py potential.yaml active_set.asi
"""
import json
import sys

import numpy as np
from ase import Atoms
from pyace import PyACECalculator

potential, asi = sys.argv[1:3]
calc = PyACECalculator(potential, gamma_lower_bound=1e300, gamma_upper_bound=1e300)
calc.set_active_set(asi)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    if not line.strip():
        continue
    try:
        s = json.loads(line)
        atoms = Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])
        atoms.calc = calc
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces().tolist()
        stress = atoms.get_stress(voigt=True).tolist() if all(s["pbc"]) else None
        gamma = np.asarray(calc.results["gamma"], dtype=np.float64).tolist()
        out = {"energy_ev": energy, "forces_ev_per_a": forces, "stress_ev_per_a3": stress, "gamma": gamma}
    except Exception as e:  # reported to autopipe, which names the structure
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
