"""pymatgen's PhaseDiagram on a CSV of entries (name,formula,energy_ev), as JSON.

Usage: python3 hull_pymatgen.py ENTRIES.csv OUT.json
Each entry: formation energy per atom, energy above hull, stable (a vertex of the
hull), decomposition {name: atomic fraction}.
"""
import csv
import json
import sys

from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

entries = []
with open(sys.argv[1]) as f:
    for row in csv.DictReader(f):
        entries.append(PDEntry(Composition(row["formula"]), float(row["energy_ev"]), name=row["name"]))
pd = PhaseDiagram(entries)
stable = {id(e) for e in pd.stable_entries}
out = []
for e in entries:
    decomposition = pd.get_decomposition(e.composition)
    out.append({
        "name": e.name,
        "formation_energy_ev_per_atom": pd.get_form_energy_per_atom(e),
        "e_above_hull_ev_per_atom": pd.get_e_above_hull(e),
        "stable": id(e) in stable,
        "decomposition": {d.name: amount for d, amount in decomposition.items()},
    })
with open(sys.argv[2], "w") as f:
    json.dump(out, f)
