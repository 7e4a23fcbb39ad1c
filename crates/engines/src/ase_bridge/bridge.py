"""The Python side of autopipe's ASE bridge (embedded in the autopipe binary).

Protocol: JSON, one object per line. The first line on stdin configures the bridge:
{"calculator": "pkg.module.Name", "kwargs": {...}, "extra_results": ["gamma"]}.
The bridge answers {"ready": true} or {"fatal": KIND, "message": ...} (KIND is one of
"ase", "module", "attribute", "construct") and exits on a fatal answer. Then every line
is one structure {"numbers", "positions", "cell", "pbc"} (Å) answered by
{"ok": true, "energy", "forces", "stress" (Voigt eV/Å^3 or null), "extra": {key: flat list}}
or {"ok": false, "error_type", "message"}. An exception in one structure fails only it.
Anything the calculator prints goes to stderr: stdout carries the protocol alone.
"""

import importlib
import json
import math
import os
import sys
import traceback

_proto = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr


def send(obj):
    _proto.write(json.dumps(obj, allow_nan=False) + "\n")
    _proto.flush()


def fatal(kind, message):
    send({"fatal": kind, "message": message})
    sys.exit(3)


def flat(value):
    """A number or nested sequence of numbers as one flat list of floats."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(flat(v))
        return out
    return [float(value)]


def finite(name, values):
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"the calculator returned a non-finite {name}")
    return values


def make_calculator(config):
    try:
        import ase  # noqa: F401
        from ase import Atoms
    except Exception as e:  # ImportError, or a broken install
        fatal("ase", f"cannot import ase with {sys.executable}: {e}")
    path = config["calculator"]
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        fatal("module", f"`{path}` is not an import path (module.Name)")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        fatal("module", f"cannot import module `{module_name}` with {sys.executable}: {type(e).__name__}: {e}")
    factory = getattr(module, attribute, None)
    if factory is None:
        fatal("attribute", f"module `{module_name}` has no `{attribute}`")
    try:
        calc = factory(**config.get("kwargs", {}))
    except Exception as e:
        fatal("construct", f"`{path}(**kwargs)` raised {type(e).__name__}: {e}\n{traceback.format_exc()}")
    if isinstance(calc, Atoms) or not hasattr(calc, "get_potential_energy"):
        fatal("construct", f"`{path}(**kwargs)` returned a {type(calc).__name__}, not an ASE calculator")
    return Atoms, calc


def evaluate(Atoms, calc, request, extra_results):
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms = Atoms(
        numbers=request["numbers"], positions=request["positions"], cell=request["cell"], pbc=request["pbc"]
    )
    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    forces = finite("force", flat(atoms.get_forces()))
    stress = None
    if all(request["pbc"]):
        try:
            stress = finite("stress", flat(atoms.get_stress(voigt=True)))
        except PropertyNotImplementedError:
            stress = None
    finite("energy", [energy])
    extra = {}
    results = getattr(calc, "results", {})
    for key in extra_results:
        if key not in results:
            raise KeyError(f"the calculator's results have no `{key}` (they have: {', '.join(sorted(results))})")
        extra[key] = finite(key, flat(results[key]))
    return {"ok": True, "energy": energy, "forces": forces, "stress": stress, "extra": extra}


def main():
    line = sys.stdin.readline()
    if not line:
        return
    config = json.loads(line)
    Atoms, calc = make_calculator(config)
    extra_results = config.get("extra_results", [])
    send({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = evaluate(Atoms, calc, json.loads(line), extra_results)
        except Exception as e:
            answer = {"ok": False, "error_type": type(e).__name__, "message": str(e)}
        send(answer)


main()
