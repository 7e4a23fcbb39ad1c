//! Timing of SNAP descriptors with gradients on the 128-atom bcc W cell of LAMMPS's W
//! example (a = 3.1652 Å, 2J = 8, rcutfac 4.73442, rfac0 0.99363, rmin0 0).
//!
//! `cargo run --release -p autopipe-potential --example snap_bench [repeats]`
//! Compare with `bench/lammps_snad_bench.py` (LAMMPS `compute snad/atom`).

use autopipe_atoms::{Element, NeighborList, Structure};
use autopipe_potential::{Snap, SnapElement, SnapParams};

/// CPU time of this thread in seconds (the machine is shared: wall time is not ours).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: plain syscall writing into a local struct.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let repeats: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(200);
    let a = 3.1652;
    let n = 4;
    let w = Element::from_symbol("W").unwrap();
    let mut pos = Vec::new();
    for i in 0..n {
        for j in 0..n {
            for k in 0..n {
                let (x, y, z) = (i as f64 * a, j as f64 * a, k as f64 * a);
                pos.push([x, y, z]);
                pos.push([x + 0.5 * a, y + 0.5 * a, z + 0.5 * a]);
            }
        }
    }
    let l = n as f64 * a;
    let s = Structure::new([[l, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, l]], pos, vec![w; 128], [true; 3]).unwrap();
    let params = SnapParams {
        twojmax: 8,
        rcutfac: 4.73442,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: vec![SnapElement { element: w, radius: 0.5, weight: 1.0 }],
    };
    let snap = Snap::new(&params).unwrap();
    let beta = vec![(0..params.n_columns()).map(|k| 1e-3 * (k as f64 + 1.0).sin()).collect::<Vec<f64>>()];

    let time = |label: &str, f: &mut dyn FnMut()| {
        f();
        // best of 5 rounds of CPU time
        let mut dt = f64::INFINITY;
        for _ in 0..5 {
            let t = cpu_seconds();
            for _ in 0..repeats.div_ceil(5) {
                f();
            }
            dt = dt.min((cpu_seconds() - t) / repeats.div_ceil(5) as f64);
        }
        println!("{label:<44} {:>9.3} ms/call (CPU)  {:>10.0} atoms/s", dt * 1e3, 128.0 / dt);
        dt
    };
    let mut sink = 0.0;
    time("neighbour list (cutoff 4.73442)", &mut || {
        sink += NeighborList::build(&s, params.max_cutoff()).total_pairs() as f64;
    });
    time("B only", &mut || sink += snap.descriptors(&s).unwrap().b[3]);
    time("B + per-pair dB/dr", &mut || {
        sink += snap.descriptors_with_gradients(&s).unwrap().gradients.unwrap().dbdrj[5];
    });
    time("B + dB/dr + snad/atom rows", &mut || {
        sink += snap.descriptors_with_gradients(&s).unwrap().force_rows()[7];
    });
    time("B + dB/dr + snad + snav rows", &mut || {
        let d = snap.descriptors_with_gradients(&s).unwrap();
        sink += d.force_rows()[7] + d.per_atom_virial()[9];
    });
    time("energy+forces+virial (adjoint, pair snap)", &mut || {
        sink += snap.energy_forces_virial(&s, &beta).unwrap().energy;
    });
    println!("(checksum {sink:e})");
}
