"""bpf/events.h and its Python mirror (otel_fim/kernel/layout.py) agree in full: every struct,
enum and #define of the header has a mirror, and gcc lays out and evaluates them as Python does.

The C program is generated from the mirrors, so a new member or constant is compared as soon as
it is mirrored, and the name checks fail as soon as the header declares one that is not. Runs
without root (gcc only); the load-time check of the BPF object is tests/kernel/test_map_check.py.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from otel_fim.kernel import layout

Facts = dict[str, int]


# ---- what the header declares ---------------------------------------------------------------
def header_text() -> str:
    text = layout.EVENTS_H.read_text()
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)


def c_structs() -> dict[str, list[str]]:
    """struct name -> member names, in order (the last identifier of each declaration)."""
    structs = {}
    for name, body in re.findall(r"\bstruct\s+(\w+)\s*\{(.*?)\};", header_text(), re.S):
        decls = [d.strip() for d in body.split(";") if d.strip()]
        structs[name] = [re.search(r"(\w+)\s*(\[[^\]]*\]\s*)*$", d).group(1) for d in decls]  # type: ignore[union-attr]
    return structs


def c_enums() -> dict[str, list[str]]:
    """enum name -> enumerator names, in order."""
    enums = {}
    for name, body in re.findall(r"\benum\s+(\w+)\s*\{(.*?)\};", header_text(), re.S):
        items = [re.sub(r"=.*", "", item, flags=re.S).strip() for item in body.split(",")]
        enums[name] = [item for item in items if item]
    return enums


def c_defines() -> set[str]:
    names = set(re.findall(r"^\s*#\s*define\s+(\w+)", header_text(), re.M))
    return names - {"OTEL_FIM_EVENTS_H"}  # the include guard


# ---- what Python says, as "what -> value" facts the C program prints too ---------------------
def python_facts(structs: dict[str, type[ctypes.Structure]] = layout.STRUCTS) -> Facts:
    facts: Facts = {}
    for name, mirror in structs.items():
        facts[f"sizeof(struct {name})"] = ctypes.sizeof(mirror)
        for member, *_ in mirror._fields_:
            field = getattr(mirror, member)
            facts[f"offsetof(struct {name}, {member})"] = field.offset
            facts[f"sizeof(((struct {name} *)0)->{member})"] = field.size
    for enum in layout.ENUMS.values():
        facts.update(enum.enumerators())
    facts.update(layout.CONSTANTS)
    return facts


def c_program(expressions: list[str]) -> str:
    prints = "\n".join(f'    P("{expr}", {expr})' for expr in expressions)
    return f"""#include <stdio.h>
#include <stddef.h>
#include <linux/types.h>
#include "events.h"
#define P(what, value) printf("%s\\t%llu\\n", what, (unsigned long long)(value));
int main(void)
{{
{prints}
    return 0;
}}
"""


@pytest.fixture(scope="module")
def c_facts(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    """The same facts as gcc computes them from events.h."""
    work: Path = tmp_path_factory.mktemp("layout")
    source, exe = work / "layout.c", work / "layout"
    source.write_text(c_program(list(python_facts())))
    subprocess.run(
        ["gcc", "-Wall", "-Werror", f"-I{layout.BPF_DIR}", "-o", str(exe), str(source)], check=True
    )
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {what: int(value) for what, value in (line.split("\t") for line in out.splitlines())}


# ---- the tests --------------------------------------------------------------------------------
def test_every_struct_is_mirrored_member_by_member() -> None:
    header = c_structs()
    assert sorted(header) == sorted(layout.STRUCTS), "structs in events.h vs layout.STRUCTS"
    for name, members in header.items():
        mirrored = [member for member, *_ in layout.STRUCTS[name]._fields_]
        assert members == mirrored, f"struct {name}: events.h members vs its mirror"


def test_every_enum_is_mirrored_in_order() -> None:
    header = c_enums()
    assert sorted(header) == sorted(layout.ENUMS), "enums in events.h vs layout.ENUMS"
    for name, enumerators in header.items():
        assert enumerators == list(layout.ENUMS[name].enumerators()), f"enum {name}"


def test_every_define_is_mirrored() -> None:
    assert sorted(c_defines()) == sorted(layout.CONSTANTS), "#defines in events.h vs layout.CONSTANTS"


def test_offsets_sizes_and_values_agree(c_facts: Facts) -> None:
    expected = python_facts()
    assert list(c_facts) == list(expected)  # the program printed every fact
    mismatches = [
        f"{what}: C {c_facts[what]}, Python {value}"
        for what, value in expected.items()
        if c_facts[what] != value
    ]
    assert not mismatches, "\n".join(mismatches)


def test_a_wrong_mirror_is_caught(c_facts: Facts) -> None:
    """The comparison can fail: a discarder mirror with `revision` as 32 bits differs in the
    member's size, the offsets after it and the struct's size."""

    class WrongDiscarder(ctypes.Structure):
        _fields_ = [
            (m, ctypes.c_uint32 if m == "revision" else t) for m, t, *_ in layout.FimDiscarder._fields_
        ]

    wrong = python_facts({**layout.STRUCTS, "fim_discarder": WrongDiscarder})
    differ = sorted(what for what, value in wrong.items() if c_facts[what] != value)
    assert differ == [
        "offsetof(struct fim_discarder, generation)",
        "offsetof(struct fim_discarder, mnt_id)",
        "sizeof(((struct fim_discarder *)0)->revision)",
        "sizeof(struct fim_discarder)",
    ]


def test_maps_name_mirrors_of_the_contract() -> None:
    """layout.MAPS (the load-time check) refers only to registered mirrors or plain integers."""
    registered = set(layout.STRUCTS.values())
    for mirror in layout.MAPS:
        for part in (mirror.key, mirror.value):
            assert part in registered or part in (ctypes.c_uint32, ctypes.c_uint64), mirror.name
