//! Every prototype against ASE's (`ase.build.bulk`, `ase.spacegroup.crystal`): the same
//! cell and the same atoms at the same places, up to ordering.
mod common;

use autopipe_atoms::Element;
use autopipe_build::Prototype;

fn el(s: &str) -> Element {
    Element::from_symbol(s).unwrap()
}

#[test]
fn prototypes_equal_ase() {
    let ase = common::ase(&["prototypes"]);
    let a = 3.7;
    let cases: Vec<(&str, Prototype, Vec<&str>, Option<f64>)> = vec![
        ("sc", Prototype::Sc, vec!["Po"], None),
        ("bcc", Prototype::Bcc, vec!["Fe"], None),
        ("fcc", Prototype::Fcc, vec!["Cu"], None),
        ("hcp", Prototype::Hcp, vec!["Mg"], None),
        ("hcp_c", Prototype::Hcp, vec!["Mg"], Some(1.62 * a)),
        ("diamond", Prototype::Diamond, vec!["Si"], None),
        ("rocksalt", Prototype::Rocksalt, vec!["Na", "Cl"], None),
        ("zincblende", Prototype::Zincblende, vec!["Zn", "S"], None),
        ("wurtzite", Prototype::Wurtzite, vec!["Zn", "O"], None),
        ("wurtzite_c", Prototype::Wurtzite, vec!["Zn", "O"], Some(1.6 * a)),
        ("b2", Prototype::B2, vec!["Cs", "Cl"], None),
        ("perovskite", Prototype::Perovskite, vec!["Sr", "Ti", "O"], None),
        ("l12", Prototype::L12, vec!["Cu", "Au"], None),
        ("l10", Prototype::L10, vec!["Cu", "Au"], Some(1.1 * a)),
    ];
    let mut seen = std::collections::HashSet::new();
    for (name, p, elements, c) in cases {
        let elements: Vec<Element> = elements.iter().map(|s| el(s)).collect();
        let ours = p.build(&elements, a, c).unwrap();
        common::assert_same_structure(&ours, &ase[name], 1e-9, name);
        seen.insert(p);
    }
    assert_eq!(seen.len(), Prototype::ALL.len(), "every prototype is compared");
}
