"""autopipe -> Pacemaker: the labels (extended XYZ, read with ASE) as Pacemaker's dataset,
a gzip pandas pickle with the columns it expects (ase_atoms, energy, forces,
energy_corrected), and the per-frame weights (w_energy, w_forces; ExternalWeightingPolicy).
energy_corrected, what Pacemaker fits, is the energy minus the per-element reference
energies of references.json ({"Cu": -0.5, ...} eV; elements not named count 0).

usage: python pace_dataset.py labels.xyz weights.json data.pckl.gzip weights.pckl.gzip [references.json]
"""
import json
import sys

import numpy as np
import pandas as pd
from ase.io import read

labels, weights_json, data_out, weights_out = sys.argv[1:5]
frames = read(labels, index=":")
weights = json.load(open(weights_json))
references = json.load(open(sys.argv[5])) if len(sys.argv) > 5 else {}
if len(weights) != len(frames):
    sys.exit(f"{weights_json}: {len(weights)} weights for {len(frames)} frames of {labels}")
rows, wrows = [], []
for k, (atoms, (w_energy, w_forces)) in enumerate(zip(frames, weights)):
    energy = atoms.get_potential_energy()
    forces = np.array(atoms.get_forces(), dtype=np.float64)
    atoms.calc = None
    corrected = energy - sum(references.get(symbol, 0.0) for symbol in atoms.get_chemical_symbols())
    rows.append({"ase_atoms": atoms, "energy": energy, "forces": forces, "energy_corrected": corrected})
    wrows.append({"w_energy": float(w_energy), "w_forces": np.full(len(atoms), float(w_forces))})
pd.DataFrame(rows).to_pickle(data_out, compression="gzip", protocol=4)
pd.DataFrame(wrows).to_pickle(weights_out, compression="gzip", protocol=4)
print(f"pace_dataset: {len(rows)} frames")
