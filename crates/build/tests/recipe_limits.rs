//! `BulkRecipe::validate`: every field has physical limits, the error names the field,
//! and a validated recipe never gives a degenerate cell.
use autopipe_atoms::{Element, NeighborList};
use autopipe_build::{generate_bulk, limits, try_generate_bulk, BulkRecipe, Lattice};

fn recipe() -> BulkRecipe {
    BulkRecipe {
        lattice: Lattice::Fcc,
        elements: vec![Element::from_symbol("Cu").unwrap()],
        lattice_constant_a: 3.61,
        supercell: [2, 2, 2],
        count: 4,
        max_strain: 0.03,
        rattle_a: 0.1,
        vacancy_fraction: 0.2,
        seed: 42,
    }
}

/// The field named and the text of the message, for one changed field.
fn refused(change: impl FnOnce(&mut BulkRecipe)) -> (&'static str, String) {
    let mut r = recipe();
    change(&mut r);
    let e = r.validate().expect_err("must be refused");
    assert_eq!(try_generate_bulk(&r), Err(e.clone()));
    assert!(generate_bulk(&r).is_empty(), "an invalid recipe gives no structures");
    (e.field, e.message)
}

#[test]
fn the_default_recipe_is_valid() {
    recipe().validate().unwrap();
    assert_eq!(generate_bulk(&recipe()).len(), 4);
}

#[test]
fn every_field_is_checked_and_named_with_its_limit() {
    let nan = f64::NAN;
    type Change = Box<dyn FnOnce(&mut BulkRecipe)>;
    let cases: Vec<(Change, &str, &str)> = vec![
        (Box::new(|r| r.lattice_constant_a = 0.0), "lattice_constant_a", "0.5 .. 50 Å"),
        (Box::new(|r| r.lattice_constant_a = -3.0), "lattice_constant_a", "0.5 .. 50 Å"),
        (Box::new(|r| r.lattice_constant_a = 80.0), "lattice_constant_a", "0.5 .. 50 Å"),
        (Box::new(move |r| r.lattice_constant_a = nan), "lattice_constant_a", "NaN"),
        (Box::new(|r| r.max_strain = 0.9), "max_strain", "0 ..= 0.2"),
        (Box::new(|r| r.max_strain = -0.01), "max_strain", "0 ..= 0.2"),
        (Box::new(move |r| r.max_strain = nan), "max_strain", "0 ..= 0.2"),
        (Box::new(|r| r.rattle_a = 5.0), "rattle_a", "0 ..= 0.5 Å"),
        (Box::new(|r| r.rattle_a = f64::INFINITY), "rattle_a", "0 ..= 0.5 Å"),
        (Box::new(|r| r.vacancy_fraction = 3.0), "vacancy_fraction", "0 ..= 1"),
        (Box::new(move |r| r.vacancy_fraction = nan), "vacancy_fraction", "0 ..= 1"),
        (Box::new(|r| r.count = 0), "count", "between 1 and 100000"),
        (Box::new(|r| r.count = 1_000_000), "count", "between 1 and 100000"),
        (Box::new(|r| r.supercell = [0, 2, 2]), "supercell", "between 1 and 50"),
        (Box::new(|r| r.supercell = [2, 51, 2]), "supercell", "between 1 and 50"),
        (Box::new(|r| r.supercell = [50, 50, 50]), "supercell", "500000 atoms, more than 100000"),
        (Box::new(|r| r.elements.clear()), "elements", "at least one element"),
    ];
    for (change, field, text) in cases {
        let (f, m) = refused(change);
        assert_eq!(f, field, "{m}");
        assert!(m.contains(text), "{field}: {m:?} lacks {text:?}");
    }
}

#[test]
fn the_limits_themselves_are_accepted() {
    let mut r = recipe();
    r.max_strain = limits::MAX_STRAIN;
    r.rattle_a = limits::MAX_RATTLE_A;
    r.vacancy_fraction = 1.0;
    r.count = 50;
    r.validate().unwrap();
    // Strongest strains and rattles: every cell keeps a volume near the ideal one
    // (|det(1 + eps)| >= 0.6^3), and positions are finite.
    let v0 = 3.61f64.powi(3) * 8.0;
    for s in generate_bulk(&r) {
        s.validate().unwrap();
        let ratio = s.volume_a3() / v0;
        assert!(ratio > 0.2 && ratio < 2.8, "volume ratio {ratio}");
    }
    let mut big = recipe();
    big.lattice = Lattice::Diamond;
    big.supercell = [23, 23, 23]; // 97336 atoms
    big.validate().unwrap();
    big.supercell = [24, 23, 23];
    assert!(big.validate().is_err());
}

#[test]
fn every_lattice_at_its_smallest_constant_is_a_proper_cell() {
    for lattice in Lattice::ALL {
        let r = BulkRecipe { lattice, lattice_constant_a: 0.51, max_strain: 0.2, count: 3, ..recipe() };
        for s in generate_bulk(&r) {
            s.validate().unwrap();
            assert!(s.volume_a3() > 0.0);
            // The neighbour list (used by every engine) works on it.
            let _ = NeighborList::build(&s, 1.0);
        }
    }
}
