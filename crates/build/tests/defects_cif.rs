//! Symmetry-distinct sites of real crystals read from CIF: moyo's orbits of the
//! expanded cell are the CIF's asymmetric unit (one orbit per listed site, with its
//! multiplicity), and the space group is the one the file states.
use autopipe_atoms::cif::read_cif_file;
use autopipe_build::defects::{antisites, symmetry, vacancies};
use std::path::Path;

#[test]
fn orbits_of_cif_structures_are_their_asymmetric_units() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../atoms/tests/data/cif");
    // (file, space group, (element, multiplicity) per listed site in file order)
    let cases: [(&str, i32, Vec<(&str, usize)>); 2] = [
        ("garnet.cif", 230, vec![("Ca", 24), ("Al", 16), ("Si", 24), ("O", 96)]),
        ("V2O3.cif", 167, vec![("O", 6), ("V", 4)]),
    ];
    for (file, number, sites) in cases {
        let s = read_cif_file(&dir.join(file)).unwrap().remove(0).1;
        let sym = symmetry(&s, 1e-3).unwrap();
        assert_eq!(sym.number, number, "{file}");
        let mut got: Vec<(String, usize)> =
            sym.orbits.iter().map(|o| (o.element.symbol().to_string(), o.multiplicity)).collect();
        let mut want: Vec<(String, usize)> = sites.iter().map(|(e, m)| (e.to_string(), *m)).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{file}");
        let v = vacancies(&s, &sym);
        assert_eq!(v.len(), sites.len());
        // Removing atoms of different orbits gives inequivalent structures: each vacancy
        // structure has a lower symmetry than the crystal, and the removed element is the orbit's.
        for (d, o) in v.iter().zip(&sym.orbits) {
            assert_eq!(d.structure.len(), s.len() - 1);
            let removed = s.species.iter().filter(|e| **e == o.element).count()
                - d.structure.species.iter().filter(|e| **e == o.element).count();
            assert_eq!(removed, 1, "{}", d.description);
        }
        let n_species = {
            let mut e = s.species.clone();
            e.sort_by_key(|x| x.z());
            e.dedup();
            e.len()
        };
        assert_eq!(antisites(&s, &sym).len(), sites.len() * (n_species - 1));
    }
}
