#!/usr/bin/env python3
"""Time LAMMPS's compute snad/atom (and sna/atom, pair_style snap) on the 128-atom bcc W
cell of the W example: 2J=8, rcutfac 4.73442, rfac0 0.99363, rmin0 0, one core.

LD_LIBRARY_PATH=/opt/lammps-venv/lib /opt/lammps-venv/bin/python lammps_snad_bench.py [steps]

Each step of `run N` evaluates the compute (a thermo output reduces it every step); the time
of the same run without the compute is subtracted. The neighbour list is not rebuilt
(atoms do not move), but the compute's occasional full list is copied every step.
"""
import sys
import time
from lammps import lammps

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SETUP = """
units metal
atom_style atomic
atom_modify map array
boundary p p p
lattice bcc 3.1652
region box block 0 4 0 4 0 4
create_box 1 box
create_atoms 1 box
mass 1 183.84
pair_style zero 4.8
pair_coeff * *
neighbor 1.0 bin
neigh_modify every 1000 delay 0 check no
thermo_style custom step
"""
ARGS = "4.73442 0.99363 8 0.5 1.0 rmin0 0 switchflag 1 bzeroflag 1 quadraticflag 0"


def timed(extra, steps):
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    lmp.commands_string(SETUP)
    lmp.commands_string(extra)
    lmp.command("run 0")
    best = float("inf")
    for _ in range(5):  # best of 5 rounds of CPU time (the machine is shared)
        t = time.thread_time()
        lmp.command(f"run {steps // 5}")
        best = min(best, (time.thread_time() - t) / (steps // 5))
    n = lmp.get_natoms()
    lmp.close()
    return best, n


base, n = timed("thermo 1", steps)
for label, extra in [
    ("compute sna/atom", f"compute c all sna/atom {ARGS}\ncompute r all reduce sum c_c[1]\nthermo_style custom step c_r\nthermo 1"),
    ("compute snad/atom", f"compute c all snad/atom {ARGS}\ncompute r all reduce sum c_c[1]\nthermo_style custom step c_r\nthermo 1"),
    ("compute snav/atom", f"compute c all snav/atom {ARGS}\ncompute r all reduce sum c_c[1]\nthermo_style custom step c_r\nthermo 1"),
]:
    dt, _ = timed(extra, steps)
    print(f"LAMMPS {label:<24} {1e3 * (dt - base):9.3f} ms/call  {n / (dt - base):10.0f} atoms/s   (raw step {1e3 * dt:.3f} ms, empty step {1e3 * base:.3f} ms)")

# pair_style snap with the same descriptors (energy + forces + virial every step)
import os, tempfile
d = tempfile.mkdtemp()
coeff = os.path.join(d, "W.snapcoeff")
param = os.path.join(d, "W.snapparam")
with open(coeff, "w") as f:
    f.write("# bench\n\n1 56\nW 0.5 1.0\n")
    import math
    f.write("0.0\n")
    for k in range(55):
        f.write(f"{1e-3 * math.sin(k + 1.0)}\n")
with open(param, "w") as f:
    f.write("rcutfac 4.73442\ntwojmax 8\nrfac0 0.99363\nrmin0 0\nswitchflag 1\nbzeroflag 1\nquadraticflag 0\n")
lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
lmp.commands_string(SETUP.replace("pair_style zero 4.8\npair_coeff * *\n", ""))
lmp.command("pair_style snap")
lmp.command(f"pair_coeff * * {coeff} {param} W")
lmp.command("thermo_style custom step pe press")
lmp.command("thermo 1")
lmp.command("run 0")
dt = float("inf")
for _ in range(5):
    t = time.thread_time()
    lmp.command(f"run {steps // 5}")
    dt = min(dt, (time.thread_time() - t) / (steps // 5))
lmp.close()
print(f"LAMMPS pair_style snap (E, F, virial)   {1e3 * (dt - base):9.3f} ms/call  {n / (dt - base):10.0f} atoms/s   (raw step {1e3 * dt:.3f} ms)")
