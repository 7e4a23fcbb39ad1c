"""ASE's side of crates/build/tests/*_ase.rs (needs ASE; the tests fail without it).

    python3 build_ase.py prototypes OUT.json
        every prototype built by ASE (ase.build.bulk / ase.spacegroup.crystal), dumped as
        {name: {"cell": 3x3, "positions": Nx3, "symbols": [...]}}
    python3 build_ase.py sro IN.xyz SHELLS SPECIES OUT.json
        Warren-Cowley SRO of the last frame of IN.xyz, counted directly with ASE's
        neighbour list among the atoms whose symbol is in SPECIES (comma-separated):
        the first SHELLS distinct distances (1e-3 Å apart) are the shells, and for each
        alpha_ab = 1 - N_ab / (N c_a c_b) with N_ab the ordered pairs (a at i, b at j)
        and c the concentrations among those atoms.
    python3 build_ase.py surface SYMBOL LATTICE A H,K,L LAYERS VACUUM OUT.json
        ase.build.surface(bulk(SYMBOL, LATTICE, a=A, cubic=True), (H,K,L), LAYERS, VACUUM)
"""
import json
import sys
from math import sqrt

import numpy as np
from ase.build import bulk, surface
from ase.io import read
from ase.neighborlist import neighbor_list
from ase.spacegroup import crystal


def dump(atoms):
    return {
        "cell": atoms.cell.array.tolist(),
        "positions": atoms.positions.tolist(),
        "symbols": atoms.get_chemical_symbols(),
    }


def prototypes():
    a = 3.7
    return {
        "sc": bulk("Po", "sc", a=a, cubic=True),
        "bcc": bulk("Fe", "bcc", a=a, cubic=True),
        "fcc": bulk("Cu", "fcc", a=a, cubic=True),
        "hcp": bulk("Mg", "hcp", a=a, covera=sqrt(8 / 3)),
        "hcp_c": bulk("Mg", "hcp", a=a, c=1.62 * a),
        "diamond": bulk("Si", "diamond", a=a, cubic=True),
        "rocksalt": bulk("NaCl", "rocksalt", a=a, cubic=True),
        "zincblende": bulk("ZnS", "zincblende", a=a, cubic=True),
        "wurtzite": bulk("ZnO", "wurtzite", a=a, covera=sqrt(8 / 3)),
        "wurtzite_c": bulk("ZnO", "wurtzite", a=a, c=1.6 * a),
        "b2": bulk("CsCl", "cesiumchloride", a=a, cubic=True),
        "perovskite": crystal(
            ["Sr", "Ti", "O"], [(0, 0, 0), (0.5, 0.5, 0.5), (0, 0.5, 0.5)], spacegroup=221, cellpar=[a, a, a, 90, 90, 90]
        ),
        "l12": crystal(["Au", "Cu"], [(0, 0, 0), (0, 0.5, 0.5)], spacegroup=221, cellpar=[a, a, a, 90, 90, 90]),
        "l10": crystal(
            ["Cu", "Cu", "Au"],
            [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5)],
            spacegroup=123,
            cellpar=[a, a, 1.1 * a, 90, 90, 90],
        ),
    }


def sro(path, shells, species):
    atoms = read(path, index=-1)
    keep = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s in species]
    sub = atoms[keep]
    cutoff = 2.0 * (sub.get_volume() / len(sub)) ** (1 / 3)
    while True:
        i, j, d = neighbor_list("ijd", sub, cutoff, self_interaction=False)
        distinct = []
        for x in np.sort(d):
            if not distinct or x - distinct[-1] > 1e-3:
                distinct.append(x)
        if len(distinct) > shells:
            break
        cutoff *= 1.3
    sym = np.array(sub.get_chemical_symbols())
    names = sorted(set(sym), key=lambda s: species.index(s))
    conc = {s: float(np.mean(sym == s)) for s in names}
    out = []
    for s, r in enumerate(distinct[:shells]):
        m = np.abs(d - r) < 1e-3 / 2
        n = int(m.sum())
        alpha = {}
        for x, a in enumerate(names):
            for b in names[x:]:
                nab = int(np.sum((sym[i[m]] == a) & (sym[j[m]] == b)))
                alpha[f"{a}-{b}"] = 1.0 - nab / (n * conc[a] * conc[b])
        out.append({"shell": s + 1, "distance": float(r), "pairs": n, "alpha": alpha})
    return out


def main():
    mode = sys.argv[1]
    if mode == "prototypes":
        result = {k: dump(v) for k, v in prototypes().items()}
        out = sys.argv[2]
    elif mode == "sro":
        result = sro(sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","))
        out = sys.argv[5]
    elif mode == "surface":
        sym, lat, a, hkl, layers, vac, out = sys.argv[2:9]
        hkl = tuple(int(x) for x in hkl.split(","))
        slab = surface(bulk(sym, lat, a=float(a), cubic=True), hkl, int(layers), vacuum=float(vac))
        result = dump(slab)
    else:
        raise SystemExit(f"unknown mode {mode}")
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
