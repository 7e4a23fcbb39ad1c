#!/usr/bin/env python3
"""ASE's EMT energies, forces and stresses for structures given as JSON.

Usage: ase_emt_reference.py STRUCTURES.json [PERTURBATION.json] > REFERENCE.json

Input: a JSON list of {"symbols": [...], "positions": [[x, y, z], ...] (Å),
"cell": [[...], [...], [...]] (rows, Å), "pbc": [bool, bool, bool], "asap_cutoff": bool}.
Output: a JSON list of {"energy": eV, "forces": [[...], ...] (eV/Å),
"stress": [xx, yy, zz, yz, xz, xy] (eV/Å³) or null when ASE gives none (cell rank < 3)}.
PERTURBATION, for testing the comparison itself: {"element": "Cu", "index": 2,
"relative": 1e-7} multiplies one entry of ASE's parameter table (E0, s0, V0, eta2,
kappa, lambda, n0) by 1 + relative before anything is computed.
Used by crates/engines/tests/emt_vs_ase.rs; exits with status 3 if ASE is missing.
"""
import json
import sys

try:
    import numpy as np
    from ase import Atoms
    from ase.calculators import emt as ase_emt
    from ase.calculators.emt import EMT
except ImportError as exc:  # pragma: no cover - reported by the Rust test
    print(f"ASE is not available ({exc}); run `pip install ase`", file=sys.stderr)
    sys.exit(3)


def main() -> None:
    with open(sys.argv[1]) as f:
        structures = json.load(f)
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            change = json.load(f)
        table = list(ase_emt.parameters[change["element"]])
        table[change["index"]] *= 1.0 + change["relative"]
        ase_emt.parameters[change["element"]] = tuple(table)
    out = []
    for s in structures:
        atoms = Atoms(
            symbols=s["symbols"],
            positions=np.array(s["positions"], dtype=float).reshape(-1, 3),
            cell=np.array(s["cell"], dtype=float),
            pbc=s["pbc"],
        )
        atoms.calc = EMT(asap_cutoff=bool(s.get("asap_cutoff", False)))
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces().tolist()
        stress = atoms.get_stress().tolist() if atoms.cell.rank == 3 else None
        out.append({"energy": energy, "forces": forces, "stress": stress})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
