"""ASE's side of the property tests: reads one JSON task on stdin, prints JSON.

Tasks:
  {"task": "relax_cu", "a": A0}
      EMT Cu, primitive fcc cell of lattice constant A0, relaxed with
      FrechetCellFilter + FIRE (fmax 1e-6); prints the lattice constant and energy.
  {"task": "elastic_fd", "cell": 3x3, "positions": Nx3, "symbols": [...], "delta": d}
      EMT C_ij (eV/Å³) by central finite differences of the stress: for each Voigt
      strain j, C_ij = (σ_i(+d) - σ_i(-d)) / 2d (shear strains engineering, γ = 2ε).
  {"task": "elastic_time", ...same as elastic_fd, "strains": [...]}
      The time ASE's EMT takes to compute the stresses of the strained cells.
"""
import json
import sys
import time

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE


def strained(atoms, j, e):
    eps = np.zeros((3, 3))
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    a, b = pairs[j]
    if a == b:
        eps[a, a] = e
    else:
        eps[a, b] = eps[b, a] = e / 2
    s = atoms.copy()
    s.calc = EMT()
    s.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    return s


def main():
    task = json.load(sys.stdin)
    if task["task"] == "relax_cu":
        atoms = bulk("Cu", "fcc", a=task["a"])
        atoms.calc = EMT()
        FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-6, steps=5000)
        a = np.sqrt(2) * np.linalg.norm(atoms.cell[0])
        print(json.dumps({"a": a, "energy_ev": atoms.get_potential_energy()}))
    elif task["task"] in ("elastic_fd", "elastic_time"):
        atoms = Atoms(task["symbols"], positions=task["positions"], cell=task["cell"], pbc=True)
        d = task.get("delta", 1e-4)
        if task["task"] == "elastic_fd":
            c = np.zeros((6, 6))
            for j in range(6):
                sp = strained(atoms, j, d).get_stress()
                sm = strained(atoms, j, -d).get_stress()
                c[:, j] = (sp - sm) / (2 * d)
            print(json.dumps({"c_ev_per_a3": c.tolist()}))
        else:
            t0 = time.perf_counter()
            for j in range(6):
                for e in task["strains"]:
                    strained(atoms, j, e).get_stress()
            print(json.dumps({"seconds": time.perf_counter() - t0}))


main()
