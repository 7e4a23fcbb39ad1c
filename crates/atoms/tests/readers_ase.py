"""ASE's side of crates/atoms/tests/readers_ase.rs.

    python3 readers_ase.py read FORMAT FILE OUT.json    # ase.io.read(FILE, format=FORMAT) -> JSON
    python3 readers_ase.py contcar OUT_FILE OUT.json    # ASE writes a POSCAR with selective
                                                         # dynamics, Cartesian, then reads it back
"""
import json
import sys

import ase.io
from ase.build import bulk
from ase.constraints import FixAtoms


def dump(atoms):
    return {
        "cell": atoms.cell.array.tolist(),
        "positions": atoms.positions.tolist(),
        "symbols": atoms.get_chemical_symbols(),
    }


mode = sys.argv[1]
if mode == "read":
    fmt, path, out = sys.argv[2:5]
    atoms = ase.io.read(path, format=fmt)
elif mode == "contcar":
    path, out = sys.argv[2:4]
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (1, 1, 2)
    atoms.rattle(0.05, seed=1)
    atoms.set_constraint(FixAtoms(indices=[0, 3]))
    ase.io.write(path, atoms, format="vasp", direct=False, sort=True)
    atoms = ase.io.read(path, format="vasp")
else:
    raise SystemExit(f"unknown mode {mode}")
with open(out, "w") as f:
    json.dump(dump(atoms), f)
