"""Helper for crates/atoms/tests/extxyz_ase.rs: ASE's side of the extxyz compatibility test.

    python3 extxyz_ase.py read  IN.xyz  OUT.json   # ase.io.read(IN, index=':') -> JSON
    python3 extxyz_ase.py write OUT.xyz OUT.json   # build frames, ase.io.write them, then
                                                   # dump what ase.io.read gets back
    python3 extxyz_ase.py reject FILE...           # exit 0 iff ASE refuses every file

Every float is dumped as repr() (a string), so the Rust side can compare bit for bit.
Calculator results are dumped under their extended XYZ names: energy, free_energy,
stress (Voigt, 6), forces; any other per-config result goes to "info" and any other
per-atom result to "arrays" (with the file's column name, e.g. charges -> charge);
constraints are dumped as the move_mask array ASE writes.
"""
import json
import sys

import numpy as np

import ase
import ase.io
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io.extxyz import PROPERTY_NAME_MAP, SPECIAL_3_3_KEYS, _make_move_mask


def f(x):
    return repr(float(x))


def info_value(key, v):
    if isinstance(v, (bool, np.bool_)):
        return {"type": "bool", "value": bool(v)}
    if isinstance(v, (int, np.integer)):
        return {"type": "int", "value": int(v)}
    if isinstance(v, (float, np.floating)):
        return {"type": "float", "value": f(v)}
    if isinstance(v, str):
        return {"type": "str", "value": v}
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return info_value(key, v.item())
        if key in SPECIAL_3_3_KEYS and v.shape == (3, 3):
            v = v.reshape(9, order="F")
        if v.ndim == 1:
            if v.dtype.kind == "b":
                return {"type": "bool_array", "value": [bool(x) for x in v]}
            if v.dtype.kind in "iu":
                return {"type": "int_array", "value": [int(x) for x in v]}
            if v.dtype.kind == "f":
                return {"type": "float_array", "value": [f(x) for x in v]}
        return {"type": "json", "value": v.tolist()}
    if isinstance(v, list) and v and all(isinstance(x, (bool, np.bool_)) for x in v):
        return {"type": "bool_array", "value": [bool(x) for x in v]}
    return {"type": "json", "value": v}


def array_value(v):
    v = np.asarray(v)
    columns = 1 if v.ndim == 1 else v.shape[1]
    flat = v.reshape(-1)
    kind = v.dtype.kind
    if kind == "f":
        return {"type": "R", "columns": columns, "values": [f(x) for x in flat]}
    if kind in "iu":
        return {"type": "I", "columns": columns, "values": [int(x) for x in flat]}
    if kind == "b":
        return {"type": "L", "columns": columns, "values": [bool(x) for x in flat]}
    return {"type": "S", "columns": columns, "values": [str(x) for x in flat]}


def dump(atoms):
    d = {
        "symbols": atoms.get_chemical_symbols(),
        "positions": [[f(x) for x in p] for p in atoms.positions],
        "cell": [[f(x) for x in row] for row in np.asarray(atoms.cell)],
        "pbc": [bool(x) for x in atoms.pbc],
        "energy": None,
        "free_energy": None,
        "stress": None,
        "forces": None,
        "info": {},
        "arrays": {},
    }
    for k, v in atoms.info.items():
        d["info"][k] = info_value(k, v)
    for k, v in atoms.arrays.items():
        if k in ("numbers", "positions"):
            continue
        d["arrays"][PROPERTY_NAME_MAP.get(k, k)] = array_value(v)
    if atoms.constraints:
        d["arrays"]["move_mask"] = array_value(_make_move_mask(atoms))
    if atoms.calc is not None:
        for k, v in atoms.calc.results.items():
            if k in ("energy", "free_energy"):
                d[k] = f(v)
            elif k == "stress":
                v = np.asarray(v)
                assert v.shape == (6,), v.shape
                d[k] = [f(x) for x in v]
            elif k == "forces":
                d[k] = [[f(x) for x in p] for p in v]
            elif np.ndim(v) >= 1 and len(v) == len(atoms) and k not in ("dipole",):
                d["arrays"][PROPERTY_NAME_MAP.get(k, k)] = array_value(v)
            else:
                d["info"][k] = info_value(k, v)
    return d


def ase_frames():
    """Frames as ASE users make them: calculator results, info, arrays, constraints."""
    frames = []

    # 1. bulk Cu, rattled, all four labels (stress given in Voigt order, as calculators do).
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.rattle(0.05, seed=1)
    rng = np.random.default_rng(7)
    a.calc = SinglePointCalculator(
        a,
        energy=-14.123456789012345,
        free_energy=-14.2000000001,
        forces=rng.normal(size=(len(a), 3)) * 0.3,
        stress=np.array([0.011, -0.022, 0.033, 1.5e-5, -2.5e-4, 7e-3]),
    )
    a.info.update({
        "config_type": "bulk_fcc",
        "step": 3,
        "temperature": 300.5,
        "converged": True,
        "not_converged": False,
        "kpts": np.array([4, 4, 4]),
        "weights": np.array([0.125, 0.875]),
        "flags": np.array([True, False, True]),
        "note": "two words",
        "nested": {"a": 1, "b": [1, 2]},
        "names": ["x", "y"],
        "matrix": np.array([[1, 2], [3, 4]]),
        "tiny": 1.25e-12,
        "huge": 6.02214076e23,
    })
    frames.append(a)

    # 2. triclinic, per-atom arrays of every type, tags and momenta.
    b = Atoms(
        "SiCO2",
        cell=[[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [0.7, -0.4, 5.2]],
        scaled_positions=[[0.0, 0.0, 0.0], [0.25, 0.25, 0.25], [0.5, 0.1, 0.7], [0.9, 0.6, 0.3]],
        pbc=True,
    )
    b.set_tags([1, 0, 2, 2])
    b.set_momenta(rng.normal(size=(4, 3)))
    b.new_array("label", np.array(["a", "bb", "c", "dd"]))
    b.new_array("fixed", np.array([True, False, False, True]))
    b.new_array("vec2", rng.normal(size=(4, 2)))
    b.new_array("ivec", np.array([[1, -2, 3], [4, 5, -6], [7, 8, 9], [0, 0, 0]]))
    b.calc = SinglePointCalculator(b, energy=-30.5, forces=rng.normal(size=(4, 3)))
    frames.append(b)

    # 3. slab, pbc T T F, energy only, a FixAtoms constraint (move_mask column).
    c = fcc111("Al", size=(2, 2, 2), vacuum=7.5)
    c.set_constraint(FixAtoms(indices=[0, 1, 2, 3]))
    c.calc = SinglePointCalculator(c, energy=-25.0)
    c.info["surface"] = "111"
    frames.append(c)

    # 4. a molecule: no cell, no pbc, no calculator.
    d = molecule("H2O")
    d.info["name"] = "water"
    frames.append(d)

    # 5. a molecule with charges and dipole from a calculator, in a box without pbc.
    e = molecule("CH4")
    e.cell = [10.0, 11.0, 12.0]
    e.pbc = False
    e.calc = SinglePointCalculator(
        e,
        energy=-24.0,
        forces=np.zeros((5, 3)),
        charges=np.array([-0.4, 0.1, 0.1, 0.1, 0.1]),
        dipole=np.array([0.0, 0.01, -0.02]),
    )
    frames.append(e)
    return frames


def main():
    if sys.argv[1] == "reject":
        # every file given must make ase.io.read fail; print the ones it accepts
        accepted = []
        for path in sys.argv[2:]:
            try:
                ase.io.read(path, index=":", format="extxyz")
                accepted.append(path)
            except Exception:
                pass
        print("\n".join(accepted))
        raise SystemExit(1 if accepted else 0)
    mode, xyz, out = sys.argv[1:4]
    if mode == "read":
        frames = ase.io.read(xyz, index=":", format="extxyz")
    elif mode == "write":
        ase.io.write(xyz, ase_frames(), format="extxyz")
        frames = ase.io.read(xyz, index=":", format="extxyz")
    else:
        raise SystemExit(f"unknown mode {mode}")
    with open(out, "w") as fh:
        json.dump({"ase_version": ase.__version__, "frames": [dump(a) for a in frames]}, fh, indent=1)


if __name__ == "__main__":
    main()
