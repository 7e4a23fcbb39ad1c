//! `autopipe build ...`: structure generation on its own. Every subcommand writes
//! extended XYZ (`--out -` is standard output, reports then go to standard error) and
//! the ones that transform structures read them (`--in -` is standard input), so they
//! compose in a pipe:
//!
//! ```text
//! autopipe build prototype --prototype fcc --elements Cu --lattice-constant-a 3.6 --out - \
//!   | autopipe build supercell --in - --atoms 32 --out - \
//!   | autopipe build rattle --in - --sigma-a 0.05 --count 10 --out rattled.xyz
//! ```

use anyhow::{anyhow, bail, Context, Result};
use autopipe_atoms::cif::read_cif_file;
use autopipe_atoms::extxyz::{read_extxyz, write_extxyz_file};
use autopipe_atoms::poscar::read_poscar_file;
use autopipe_atoms::{Element, Frame, InfoValue, Structure};
use autopipe_build::sqs::{SqsProblem, Sublattice};
use autopipe_build::{make_supercell, nearly_cubic_supercell, BulkRecipe, Lattice, Prototype};
use clap::Subcommand;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BuildCommand {
    /// Strained, rattled bulk supercells (random alloys with several elements).
    Bulk {
        #[arg(long, default_value = "fcc")]
        lattice: String,
        /// Chemical symbols, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "Cu")]
        elements: Vec<String>,
        #[arg(long)]
        lattice_constant_a: f64,
        #[arg(long, num_args = 3, default_values_t = [2, 2, 2])]
        supercell: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, default_value_t = 0.02)]
        max_strain: f64,
        #[arg(long, default_value_t = 0.05)]
        rattle_a: f64,
        #[arg(long, default_value_t = 0.0)]
        vacancy_fraction: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output extended XYZ file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// A crystal prototype (sc, bcc, fcc, hcp, diamond, rocksalt, zincblende, wurtzite,
    /// perovskite, l12, b2, l10) from element names, in ASE's cells.
    Prototype {
        #[arg(long)]
        prototype: String,
        /// One element per sublattice, comma-separated (rocksalt: cation,anion;
        /// perovskite: A,B,X; l12: majority,minority).
        #[arg(long, value_delimiter = ',')]
        elements: Vec<String>,
        #[arg(long)]
        lattice_constant_a: f64,
        /// c for hcp, wurtzite and l10 (default: ideal c/a).
        #[arg(long)]
        lattice_constant_c: Option<f64>,
        /// Repetitions of the cell along a, b, c.
        #[arg(long, num_args = 3, default_values_t = [1, 1, 1])]
        supercell: Vec<usize>,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Read structures from extended XYZ, VASP POSCAR/CONTCAR or CIF (symmetry
    /// expanded) and write them as extended XYZ.
    Read {
        /// Input files (`-`: extended XYZ on standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// extxyz, poscar or cif (default: from the file name).
        #[arg(long)]
        format: Option<String>,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Supercells of every input structure: from a 3x3 integer matrix (rows: new
    /// vectors in the old basis), a diagonal, or the most nearly cubic with --atoms.
    Supercell {
        #[arg(long = "in")]
        input: PathBuf,
        /// Nine integers, row by row.
        #[arg(long, num_args = 9, allow_negative_numbers = true, conflicts_with_all = ["diagonal", "atoms"])]
        matrix: Option<Vec<i64>>,
        #[arg(long, num_args = 3, conflicts_with = "atoms")]
        diagonal: Option<Vec<i64>>,
        /// Target atom count: the most nearly cubic supercell (entries -2..=2).
        #[arg(long)]
        atoms: Option<usize>,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// A special quasirandom structure: simulated annealing of the occupations to the
    /// random alloy's pair correlations (Warren-Cowley SRO per shell). The SRO table goes
    /// to standard error, or with --json as JSON to standard output.
    Sqs {
        /// Prototype of the parent lattice (as `build prototype`).
        #[arg(long)]
        lattice: String,
        /// Elements per sublattice, comma-separated; sublattices separated by `/`
        /// (rocksalt with mixed cations: `Mg,Ni/O`).
        #[arg(long)]
        elements: String,
        /// Fractions in the same layout (`0.5,0.5/1`; default: equal shares).
        #[arg(long)]
        fractions: Option<String>,
        #[arg(long)]
        lattice_constant_a: f64,
        #[arg(long)]
        lattice_constant_c: Option<f64>,
        /// Repetitions of the prototype's cell along a, b, c.
        #[arg(long, num_args = 3, required = true)]
        supercell: Vec<usize>,
        /// Shells per sublattice pair.
        #[arg(long, default_value_t = 3)]
        shells: usize,
        /// Trial swaps.
        #[arg(long, default_value_t = 200_000)]
        steps: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The SRO table as JSON on standard output.
        #[arg(long)]
        json: bool,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Surface slabs of every input (conventional bulk) structure for a Miller index:
    /// every termination (the first is ASE's `ase.build.surface` cut), c perpendicular
    /// to the surface, vacuum on both sides.
    Slab {
        #[arg(long = "in")]
        input: PathBuf,
        /// h k l, relative to the input cell's vectors.
        #[arg(long, num_args = 3, required = true, allow_negative_numbers = true)]
        miller: Vec<i64>,
        /// Repetitions of the oriented cell (ASE's `layers`).
        #[arg(long, default_value_t = 3)]
        layers: usize,
        /// Vacuum on each side, Å.
        #[arg(long, default_value_t = 10.0)]
        vacuum_a: f64,
        /// Only this termination (0: ASE's cut); default: all.
        #[arg(long)]
        termination: Option<usize>,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Point defects at symmetry-distinct sites (orbits from the space group found by
    /// moyo): one vacancy per orbit, one antisite per orbit and other species, one
    /// interstitial per orbit of the largest empty spheres.
    Defects {
        #[arg(long = "in")]
        input: PathBuf,
        /// Vacancies (default: vacancies and antisites).
        #[arg(long)]
        vacancies: bool,
        #[arg(long)]
        antisites: bool,
        /// Interstitials of this element at the symmetry-distinct centres of the largest
        /// empty spheres (Voronoi vertices).
        #[arg(long)]
        interstitial: Option<String>,
        /// Interstitial sites closer than this to an atom are not used, Å.
        #[arg(long, default_value_t = 1.0)]
        min_distance_a: f64,
        /// Spacing of the grid the empty spheres are searched on, Å.
        #[arg(long, default_value_t = 0.2)]
        grid_a: f64,
        /// Symmetry tolerance, Å.
        #[arg(long, default_value_t = 1e-3)]
        symprec_a: f64,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Farthest-point selection of `--count` structures of a pool on their descriptors
    /// (mean SNAP bispectrum per element, concatenated), seeded with an already labelled
    /// set so that the picks are far from what is known. Deterministic.
    Select {
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        count: usize,
        /// Structures already labelled (extended XYZ); no pick duplicates one of them.
        #[arg(long)]
        labelled: Option<PathBuf>,
        /// SNAP 2J of the descriptors.
        #[arg(long, default_value_t = 6)]
        twojmax: usize,
        /// SNAP cutoff of the descriptors, Å.
        #[arg(long, default_value_t = 4.7)]
        cutoff_a: f64,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Screen candidates: reject those with two atoms closer than a fraction of the sum
    /// of their covalent radii and, with a surrogate, those whose surrogate forces are
    /// too large or whose energy per atom is far above the set's median. Writes the kept
    /// ones; the reason of every rejection goes to standard error (or with --json to
    /// standard output) and into the frame's info (`screen_reason`) of `--rejected`.
    Screen {
        #[arg(long = "in")]
        input: PathBuf,
        /// Closest allowed distance / sum of covalent radii.
        #[arg(long, default_value_t = 0.6)]
        min_distance_fraction: f64,
        /// emt, model:FILE (a model JSON of a run) or ase:IMPORT.PATH (any ASE calculator).
        #[arg(long)]
        surrogate: Option<String>,
        /// Python for an ase: surrogate (default python3 on PATH).
        #[arg(long)]
        surrogate_python: Option<String>,
        /// Keyword arguments of an ase: surrogate, as a JSON object.
        #[arg(long)]
        surrogate_kwargs: Option<String>,
        /// Largest allowed surrogate force, eV/Å.
        #[arg(long, default_value_t = 20.0)]
        max_force_ev_per_a: f64,
        /// Largest allowed surrogate energy above the median, eV/atom.
        #[arg(long, default_value_t = 1.0)]
        max_energy_above_median_ev_per_atom: f64,
        /// Write the rejected structures here, with their reasons in the info.
        #[arg(long)]
        rejected: Option<PathBuf>,
        /// One JSON object per input frame on standard output instead of the stderr lines.
        #[arg(long)]
        json: bool,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Gaussian rattle of every input structure: `--count` copies each, seeded.
    Rattle {
        #[arg(long = "in")]
        input: PathBuf,
        /// Standard deviation per Cartesian component, Å.
        #[arg(long)]
        sigma_a: f64,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Strain every input structure: a given Voigt strain, a volumetric one, or
    /// `--count` random ones with components up to `--max-strain`.
    Strain {
        #[arg(long = "in")]
        input: PathBuf,
        /// Voigt components xx,yy,zz,yz,xz,xy (engineering shears).
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true, conflicts_with_all = ["volumetric", "max_strain"])]
        voigt: Option<Vec<f64>>,
        /// Relative volume change (0.03: +3 % volume), isotropic.
        #[arg(long, allow_negative_numbers = true, conflicts_with = "max_strain")]
        volumetric: Option<f64>,
        #[arg(long)]
        max_strain: Option<f64>,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(short, long)]
        out: PathBuf,
    },
}

fn elements(list: &[String], flag: &str) -> Result<Vec<Element>> {
    list.iter().map(|s| s.trim().parse::<Element>().map_err(|e| anyhow!("--{flag}: {e}"))).collect()
}

fn prototype(name: &str, flag: &str) -> Result<Prototype> {
    Prototype::parse(name).ok_or_else(|| anyhow!("--{flag}: unknown prototype {name:?}; known: {}", Prototype::names()))
}

fn reps(v: &[usize], flag: &str) -> Result<[usize; 3]> {
    let r = [v[0], v[1], v[2]];
    if let Some(n) = r.iter().find(|&&n| n == 0 || n > autopipe_build::limits::MAX_SUPERCELL) {
        bail!("--{flag}: {n} repetitions: each must be between 1 and {}", autopipe_build::limits::MAX_SUPERCELL);
    }
    Ok(r)
}

/// Frames from a structure file of any supported format (`-`: extended XYZ on stdin).
pub fn read_structures(path: &Path, format: Option<&str>) -> Result<Vec<Frame>> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let format = match format {
        Some(f) => f.to_ascii_lowercase(),
        None if path.as_os_str() == "-" => "extxyz".into(),
        None if name.ends_with(".cif") => "cif".into(),
        None if name.contains("poscar") || name.contains("contcar") || name.ends_with(".vasp") => "poscar".into(),
        None => "extxyz".into(),
    };
    let frames = match format.as_str() {
        "extxyz" | "xyz" => {
            let (text, source) = if path.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
                (s, "<stdin>".to_string())
            } else {
                let t = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                (t, path.display().to_string())
            };
            read_extxyz(&text, &source)?
        }
        "poscar" | "vasp" | "contcar" => vec![Frame::from_structure(read_poscar_file(path)?)],
        "cif" => read_cif_file(path)?
            .into_iter()
            .map(|(block, s)| {
                let mut f = Frame::from_structure(s);
                f.info.insert("cif_block".into(), InfoValue::Str(block));
                f
            })
            .collect(),
        other => bail!("--format {other:?}: expected extxyz, poscar or cif"),
    };
    if frames.is_empty() {
        bail!("{}: no structures", path.display());
    }
    for (i, f) in frames.iter().enumerate() {
        f.structure.validate().with_context(|| format!("{}: frame {}", path.display(), i + 1))?;
    }
    Ok(frames)
}

fn write(out: &Path, frames: &[Frame], what: &str) -> Result<ExitCode> {
    write_extxyz_file(out, frames)?;
    crate::report_line(out, &format!("{} {what} written to {}", frames.len(), out.display()));
    Ok(ExitCode::SUCCESS)
}

/// A frame with the input's metadata (info) kept and its labels dropped (the atoms changed).
fn derived(from: &Frame, structure: Structure) -> Frame {
    Frame { structure, info: from.info.clone(), ..Default::default() }
}

pub fn run(command: BuildCommand) -> Result<ExitCode> {
    match command {
        BuildCommand::Bulk {
            lattice,
            elements: names,
            lattice_constant_a,
            supercell,
            count,
            max_strain,
            rattle_a,
            vacancy_fraction,
            seed,
            out,
        } => {
            let lattice = Lattice::parse(&lattice)
                .with_context(|| format!("unknown lattice {lattice:?}; expected sc, fcc, bcc, hcp or diamond"))?;
            let recipe = BulkRecipe {
                lattice,
                elements: elements(&names, "elements")?,
                lattice_constant_a,
                supercell: [supercell[0], supercell[1], supercell[2]],
                count,
                max_strain,
                rattle_a,
                vacancy_fraction,
                seed,
            };
            recipe.validate().map_err(|e| anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
            let frames: Vec<_> =
                autopipe_build::generate_bulk(&recipe).into_iter().map(Frame::from_structure).collect();
            write(&out, &frames, "structures")
        }
        BuildCommand::Prototype {
            prototype: name,
            elements: names,
            lattice_constant_a,
            lattice_constant_c,
            supercell,
            out,
        } => {
            let p = prototype(&name, "prototype")?;
            let s = p
                .build(&elements(&names, "elements")?, lattice_constant_a, lattice_constant_c)
                .map_err(|e| anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
            let s = autopipe_build::supercell(&s, reps(&supercell, "supercell")?);
            let mut f = Frame::from_structure(s);
            f.info.insert("prototype".into(), InfoValue::Str(p.name().into()));
            write(&out, &[f], "structures")
        }
        BuildCommand::Read { files, format, out } => {
            let mut frames = Vec::new();
            for f in &files {
                frames.extend(read_structures(f, format.as_deref())?);
            }
            write(&out, &frames, "structures")
        }
        BuildCommand::Supercell { input, matrix, diagonal, atoms, out } => {
            let frames = read_structures(&input, None)?;
            let mut result = Vec::new();
            for (k, f) in frames.iter().enumerate() {
                let ctx = || format!("{}: frame {}", input.display(), k + 1);
                let s = match (&matrix, &diagonal, atoms) {
                    (Some(m), _, _) => {
                        let m = [[m[0], m[1], m[2]], [m[3], m[4], m[5]], [m[6], m[7], m[8]]];
                        make_supercell(&f.structure, m)
                            .map_err(|e| anyhow!("--{}: {}", e.field, e.message))
                            .with_context(ctx)?
                            .0
                    }
                    (None, Some(d), _) => {
                        let m = [[d[0], 0, 0], [0, d[1], 0], [0, 0, d[2]]];
                        make_supercell(&f.structure, m)
                            .map_err(|e| anyhow!("--diagonal: {}", e.message))
                            .with_context(ctx)?
                            .0
                    }
                    (None, None, Some(n)) => {
                        nearly_cubic_supercell(&f.structure, n)
                            .map_err(|e| anyhow!("--atoms: {}", e.message))
                            .with_context(ctx)?
                            .1
                    }
                    (None, None, None) => bail!("give --matrix, --diagonal or --atoms"),
                };
                result.push(derived(f, s));
            }
            write(&out, &result, "supercells")
        }
        BuildCommand::Sqs {
            lattice,
            elements: element_text,
            fractions,
            lattice_constant_a,
            lattice_constant_c,
            supercell,
            shells,
            steps,
            seed,
            json,
            out,
        } => {
            if json && autopipe_atoms::output::is_stdout(&out) {
                bail!("--json and --out - both want standard output; write the structure to a file");
            }
            let p = prototype(&lattice, "lattice")?;
            let groups: Vec<Vec<String>> =
                element_text.split('/').map(|g| g.split(',').map(|s| s.trim().to_string()).collect()).collect();
            if groups.len() != p.n_sublattices() {
                bail!(
                    "--elements: {} has {} sublattice{} ({}), separated by `/`; {:?} gives {}",
                    p.name(),
                    p.n_sublattices(),
                    if p.n_sublattices() == 1 { "" } else { "s" },
                    p.sublattice_names(),
                    element_text,
                    groups.len()
                );
            }
            let species: Vec<Vec<Element>> = groups.iter().map(|g| elements(g, "elements")).collect::<Result<_>>()?;
            let fractions: Vec<Vec<f64>> = match &fractions {
                None => species.iter().map(|g| vec![1.0 / g.len() as f64; g.len()]).collect(),
                Some(text) => {
                    let f: Vec<Vec<f64>> = text
                        .split('/')
                        .map(|g| {
                            g.split(',')
                                .map(|x| {
                                    x.trim().parse::<f64>().map_err(|_| anyhow!("--fractions: {x:?} is not a number"))
                                })
                                .collect::<Result<Vec<f64>>>()
                        })
                        .collect::<Result<_>>()?;
                    if f.len() != species.len() || f.iter().zip(&species).any(|(a, b)| a.len() != b.len()) {
                        bail!("--fractions {text:?} does not match --elements {element_text:?} (one fraction per element, `/` between sublattices)");
                    }
                    f
                }
            };
            let placeholder: Vec<Element> = species.iter().map(|g| g[0]).collect();
            let cell = p
                .build(&placeholder, lattice_constant_a, lattice_constant_c)
                .map_err(|e| anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
            let r = reps(&supercell, "supercell")?;
            let parent = autopipe_build::supercell(&cell, r);
            let sublattices = Sublattice::of_prototype(&parent, p, &species, &fractions);
            let problem =
                SqsProblem::new(&parent, &sublattices, shells).map_err(|e| anyhow!("--{}: {}", e.field, e.message))?;
            let start = std::time::Instant::now();
            let result = problem.anneal(steps, seed);
            let elapsed_s = start.elapsed().as_secs_f64();
            let mut frame = Frame::from_structure(result.structure.clone());
            frame.info.insert("sqs_objective".into(), InfoValue::Float(result.objective));
            frame.info.insert("sqs_seed".into(), InfoValue::Int(seed as i64));
            frame.info.insert("sqs_steps".into(), InfoValue::Int(result.steps as i64));
            frame.info.insert("sqs_shells".into(), InfoValue::Int(shells as i64));
            frame.info.insert("prototype".into(), InfoValue::Str(p.name().into()));
            write_extxyz_file(&out, &[frame])?;
            let sublattice_letter = |k: usize| ["A", "B", "X"][k.min(2)];
            if json {
                let shells_json: Vec<_> = result
                    .sro
                    .iter()
                    .map(|s| {
                        let alpha: serde_json::Map<String, serde_json::Value> =
                            s.alpha.iter().map(|(a, b, x)| (format!("{a}-{b}"), serde_json::json!(x))).collect();
                        serde_json::json!({
                            "shell": s.shell,
                            "sublattices": [sublattice_letter(s.sublattices[0]), sublattice_letter(s.sublattices[1])],
                            "distance_a": s.distance_a,
                            "ordered_pairs": s.ordered_pairs,
                            "alpha": alpha,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "prototype": p.name(),
                        "atoms": result.structure.len(),
                        "formula": result.structure.formula(),
                        "objective": result.objective,
                        "steps": result.steps,
                        "seed": seed,
                        "elapsed_s": elapsed_s,
                        "out": out.display().to_string(),
                        "shells": shells_json,
                    })
                );
            } else {
                eprintln!(
                    "SQS {} {} ({} atoms): objective {:.6} after {} trial swaps in {:.2} s (seed {seed}); written to {}",
                    p.name(),
                    result.structure.formula(),
                    result.structure.len(),
                    result.objective,
                    result.steps,
                    elapsed_s,
                    out.display()
                );
                eprintln!(
                    "{:>5} {:>11} {:>12} {:>8}  Warren-Cowley alpha per species pair",
                    "shell", "sublattices", "distance_Å", "pairs"
                );
                for s in &result.sro {
                    let alphas: Vec<String> = s.alpha.iter().map(|(a, b, x)| format!("{a}-{b} {x:+.4}")).collect();
                    eprintln!(
                        "{:>5} {:>11} {:>12.4} {:>8}  {}",
                        s.shell,
                        format!("{}-{}", sublattice_letter(s.sublattices[0]), sublattice_letter(s.sublattices[1])),
                        s.distance_a,
                        s.ordered_pairs,
                        alphas.join("  ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BuildCommand::Slab { input, miller, layers, vacuum_a, termination, out } => {
            let frames = read_structures(&input, None)?;
            let hkl = [miller[0], miller[1], miller[2]];
            let mut result = Vec::new();
            for (k, f) in frames.iter().enumerate() {
                let all = autopipe_build::slab::slabs(&f.structure, hkl, layers, vacuum_a)
                    .map_err(|e| anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))
                    .with_context(|| format!("{}: frame {}", input.display(), k + 1))?;
                let n = all.len();
                for slab in all {
                    if termination.is_some_and(|t| t != slab.termination) {
                        continue;
                    }
                    let mut d = derived(f, slab.structure);
                    d.info.insert("miller".into(), InfoValue::IntArray(hkl.to_vec()));
                    d.info.insert("termination".into(), InfoValue::Int(slab.termination as i64));
                    d.info.insert("bottom_plane".into(), InfoValue::Str(slab.bottom_plane));
                    d.info.insert("top_plane".into(), InfoValue::Str(slab.top_plane));
                    result.push(d);
                }
                if let Some(t) = termination.filter(|&t| t >= n) {
                    bail!(
                        "--termination {t}: {}: frame {} has {n} distinct termination{} (0 ..= {})",
                        input.display(),
                        k + 1,
                        if n == 1 { "" } else { "s" },
                        n - 1
                    );
                }
            }
            write(&out, &result, "slabs")
        }
        BuildCommand::Defects { input, vacancies, antisites, interstitial, min_distance_a, grid_a, symprec_a, out } => {
            if !(symprec_a.is_finite() && symprec_a > 0.0 && symprec_a <= 0.5) {
                bail!("--symprec-a {symprec_a} is outside 0 .. 0.5 Å");
            }
            if !(min_distance_a.is_finite() && (0.0..10.0).contains(&min_distance_a)) {
                bail!("--min-distance-a {min_distance_a} is outside 0 .. 10 Å");
            }
            if !(grid_a.is_finite() && (0.05..=1.0).contains(&grid_a)) {
                bail!("--grid-a {grid_a} is outside 0.05 ..= 1 Å");
            }
            let interstitial = match &interstitial {
                Some(e) => Some(e.trim().parse::<Element>().map_err(|e| anyhow!("--interstitial: {e}"))?),
                None => None,
            };
            let (want_v, want_a) =
                if vacancies || antisites || interstitial.is_some() { (vacancies, antisites) } else { (true, true) };
            let frames = read_structures(&input, None)?;
            let mut result = Vec::new();
            for (k, f) in frames.iter().enumerate() {
                let ctx = || format!("{}: frame {}", input.display(), k + 1);
                if want_v && f.structure.len() < 2 {
                    bail!("{}: one atom leaves nothing after a vacancy; make a supercell first", ctx());
                }
                let sym = autopipe_build::defects::symmetry(&f.structure, symprec_a)
                    .map_err(anyhow::Error::msg)
                    .with_context(ctx)?;
                eprintln!(
                    "{}: space group {} ({}), {} distinct site{}",
                    ctx(),
                    sym.hm_symbol,
                    sym.number,
                    sym.orbits.len(),
                    if sym.orbits.len() == 1 { "" } else { "s" }
                );
                let mut defects = Vec::new();
                if want_v {
                    defects.extend(autopipe_build::defects::vacancies(&f.structure, &sym));
                }
                if want_a {
                    defects.extend(autopipe_build::defects::antisites(&f.structure, &sym));
                }
                if let Some(e) = interstitial {
                    let sites = autopipe_build::defects::interstitial_sites(&f.structure, &sym, grid_a, min_distance_a)
                        .map_err(anyhow::Error::msg)
                        .with_context(ctx)?;
                    if sites.is_empty() {
                        eprintln!("{}: no empty sphere of radius {min_distance_a} Å or more", ctx());
                    }
                    defects.extend(autopipe_build::defects::interstitials(&f.structure, &sites, e));
                }
                for d in defects {
                    let mut frame = derived(f, d.structure);
                    frame.info.insert("defect".into(), InfoValue::Str(d.description));
                    frame.info.insert("space_group".into(), InfoValue::Int(sym.number as i64));
                    result.push(frame);
                }
            }
            write(&out, &result, "defective structures")
        }
        BuildCommand::Select { input, count, labelled, twojmax, cutoff_a, out } => {
            check_count(count)?;
            if !(2..=12).contains(&twojmax) {
                bail!("--twojmax {twojmax} is outside 2 ..= 12");
            }
            if !(cutoff_a.is_finite() && cutoff_a > 1.0 && cutoff_a < 15.0) {
                bail!("--cutoff-a {cutoff_a} is outside 1 .. 15 Å");
            }
            let pool = read_structures(&input, None)?;
            let known = match &labelled {
                Some(p) => read_structures(p, None)?,
                None => Vec::new(),
            };
            let all: Vec<Frame> = pool.iter().chain(&known).cloned().collect();
            let params = autopipe_workflow::models::default_snap_params(&all, twojmax, cutoff_a);
            let describe = |frames: &[Frame], path: &Path| -> Result<(Vec<f32>, usize)> {
                let structures: Vec<&Structure> = frames.iter().map(|f| &f.structure).collect();
                autopipe_workflow::generate::descriptor_rows(&params, &structures)
                    .map_err(|e| anyhow!("{}: {e}", path.display()))
            };
            let (cand, dim) = describe(&pool, &input)?;
            let (lab, _) = match &labelled {
                Some(p) => describe(&known, p)?,
                None => (Vec::new(), dim),
            };
            let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
            let picks = autopipe_build::select::select_fps(&cand, dim, count, &lab, threads)?;
            let chosen: Vec<Frame> = picks.iter().map(|&i| pool[i].clone()).collect();
            if chosen.len() < count.min(pool.len()) {
                eprintln!(
                    "{} of {} requested: the other candidates duplicate a pick or a labelled structure",
                    chosen.len(),
                    count
                );
            }
            write(&out, &chosen, "selected structures")
        }
        BuildCommand::Screen {
            input,
            min_distance_fraction,
            surrogate,
            surrogate_python,
            surrogate_kwargs,
            max_force_ev_per_a,
            max_energy_above_median_ev_per_atom,
            rejected,
            json,
            out,
        } => {
            if json && out.as_os_str() == "-" {
                bail!("--json and --out - both want standard output; write the structures to a file");
            }
            let criteria = autopipe_build::screen::ScreenCriteria {
                min_distance_fraction,
                max_force_ev_per_a: Some(max_force_ev_per_a),
                max_energy_above_median_ev_per_atom: Some(max_energy_above_median_ev_per_atom),
            };
            if let Err((field, message)) = criteria.validate() {
                bail!("--{}: {message}", field.replace('_', "-"));
            }
            let kwargs = match &surrogate_kwargs {
                None => Default::default(),
                Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(serde_json::Value::Object(m)) => m,
                    Ok(_) => bail!("--surrogate-kwargs: expected a JSON object, got {text}"),
                    Err(e) => bail!("--surrogate-kwargs: {e}"),
                },
            };
            let surrogate = match &surrogate {
                Some(spec) => Some(
                    autopipe_workflow::screening::Surrogate::parse(spec, surrogate_python.as_deref(), kwargs)
                        .map_err(|e| anyhow!("--surrogate {e}"))?,
                ),
                None => None,
            };
            let frames = read_structures(&input, None)?;
            let structures: Vec<&Structure> = frames.iter().map(|f| &f.structure).collect();
            let verdicts = autopipe_workflow::screening::screen_structures(&structures, &criteria, surrogate.as_ref())
                .map_err(|e| anyhow!("--surrogate: {e}"))?;
            let (mut kept, mut refused) = (Vec::new(), Vec::new());
            let mut report = Vec::new();
            for (k, (f, v)) in frames.iter().zip(&verdicts).enumerate() {
                let mut frame = f.clone();
                v.record(&mut frame);
                match &v.rejection {
                    None => kept.push(frame),
                    Some(r) => {
                        if !json {
                            eprintln!("frame {}: rejected ({}): {}", k + 1, r.reason(), r.describe());
                        }
                        refused.push(frame);
                    }
                }
                let mut entry = serde_json::json!({ "frame": k + 1, "kept": v.kept() });
                if let Some(r) = &v.rejection {
                    entry["rejection"] = serde_json::to_value(r).expect("rejections serialise");
                    entry["message"] = r.describe().into();
                }
                if let Some(n) = &v.surrogate {
                    entry["surrogate_energy_ev_per_atom"] = n.energy_ev_per_atom.into();
                    entry["surrogate_max_force_ev_per_a"] = n.max_force_ev_per_a.into();
                }
                report.push(entry);
            }
            if json {
                let summary = serde_json::json!({
                    "input": frames.len(),
                    "kept": kept.len(),
                    "rejected": refused.len(),
                    "surrogate": surrogate.as_ref().map(|s| s.name()),
                    "frames": report,
                });
                println!("{}", serde_json::to_string_pretty(&summary)?);
            }
            if let Some(path) = &rejected {
                write_extxyz_file(path, &refused)?;
            }
            if json {
                // standard output holds the JSON alone
                write_extxyz_file(&out, &kept)?;
                return Ok(ExitCode::SUCCESS);
            }
            crate::report_line(&out, &format!("{} of {} rejected", refused.len(), frames.len()));
            write(&out, &kept, "kept structures")
        }
        BuildCommand::Rattle { input, sigma_a, count, seed, out } => {
            if !(sigma_a.is_finite() && (0.0..=autopipe_build::limits::MAX_RATTLE_A).contains(&sigma_a)) {
                bail!("--sigma-a {sigma_a} is outside 0 ..= {} Å", autopipe_build::limits::MAX_RATTLE_A);
            }
            check_count(count)?;
            let frames = read_structures(&input, None)?;
            let mut result = Vec::new();
            for (k, f) in frames.iter().enumerate() {
                for c in 0..count {
                    let mut rng = autopipe_build::rng_from_seed(seed ^ mix(k, c));
                    result.push(derived(f, autopipe_build::rattle(&f.structure, sigma_a, &mut rng)));
                }
            }
            write(&out, &result, "structures")
        }
        BuildCommand::Strain { input, voigt, volumetric, max_strain, count, seed, out } => {
            check_count(count)?;
            let limit = autopipe_build::limits::MAX_STRAIN;
            let fixed: Option<[f64; 6]> = match (&voigt, volumetric) {
                (Some(v), _) => {
                    if v.len() != 6 {
                        bail!("--voigt needs six components (xx,yy,zz,yz,xz,xy), got {}", v.len());
                    }
                    if let Some(x) = v.iter().find(|x| !(x.is_finite() && x.abs() <= limit)) {
                        bail!("--voigt: {x} is outside -{limit} ..= {limit}");
                    }
                    Some([v[0], v[1], v[2], v[3], v[4], v[5]])
                }
                (None, Some(dv)) => {
                    if !(dv.is_finite() && dv > -0.5 && dv < 1.0) {
                        bail!("--volumetric {dv} is outside -0.5 .. 1");
                    }
                    let e = (1.0 + dv).cbrt() - 1.0;
                    Some([e, e, e, 0.0, 0.0, 0.0])
                }
                (None, None) => None,
            };
            let max = match (fixed, max_strain) {
                (Some(_), _) => 0.0,
                (None, Some(m)) if m.is_finite() && (0.0..=limit).contains(&m) => m,
                (None, Some(m)) => bail!("--max-strain {m} is outside 0 ..= {limit}"),
                (None, None) => bail!("give --voigt, --volumetric or --max-strain"),
            };
            let frames = read_structures(&input, None)?;
            let mut result = Vec::new();
            for (k, f) in frames.iter().enumerate() {
                for c in 0..count {
                    let eps = fixed.unwrap_or_else(|| {
                        autopipe_build::random_strain(&mut autopipe_build::rng_from_seed(seed ^ mix(k, c)), max)
                    });
                    let mut d = derived(f, autopipe_build::strain(&f.structure, eps));
                    d.info.insert("strain_voigt".into(), InfoValue::FloatArray(eps.to_vec()));
                    result.push(d);
                    if fixed.is_some() {
                        break;
                    }
                }
            }
            write(&out, &result, "structures")
        }
    }
}

fn check_count(count: usize) -> Result<()> {
    if count == 0 || count > autopipe_build::limits::MAX_COUNT {
        bail!("--count {count} is outside 1 ..= {}", autopipe_build::limits::MAX_COUNT);
    }
    Ok(())
}

/// A per-(frame, copy) seed offset.
fn mix(frame: usize, copy: usize) -> u64 {
    ((frame as u64) << 32 | copy as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
