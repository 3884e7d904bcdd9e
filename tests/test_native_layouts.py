"""The C structs the native kernels read, checked against the numpy dtypes Python fills them with.

``tracer/native/__init__.py`` declares each item the kernels take as a numpy
dtype; ``summaries.c`` and ``steps.c`` declare it as a C struct. A C program
that includes each source prints every field's offset and size and the
struct's size, as the C compiler lays them out, and the reductions' order
(reductions.h's enum) against ``tracer.summaries.REDUCTIONS``.
"""

from __future__ import annotations

import subprocess

import pytest

from tracer import native
from tracer.summaries import REDUCTIONS

LAYOUTS = [
    ("summaries.c", "item_t", native.ITEM),
    ("summaries.c", "copy_item_t", native.COPY_ITEM),
    ("steps.c", "adam_item_t", native.ADAM_ITEM),
    ("steps.c", "sgd_item_t", native.SGD_ITEM),
    ("steps.c", "rmsprop_item_t", native.RMSPROP_ITEM),
]


def _c_layouts(source: str, structs: list[tuple[str, object]], tmp_path) -> list[str]:
    """What the C compiler says of ``structs`` declared in ``source``: one line per struct and per field."""
    compiler = native._compiler()
    if compiler is None:
        pytest.skip("no C compiler: the native kernels are not built here either")
    lines = [f'#include "{native.HERE / source}"', "#include <stddef.h>", "#include <stdio.h>", "int main(void) {"]
    for struct, dtype in structs:
        lines.append(f'    printf("{struct} %zu\\n", sizeof({struct}));')
        for field in dtype.names:
            lines.append(f'    printf("{struct}.{field} %zu %zu\\n", offsetof({struct}, {field}), sizeof((({struct} *)0)->{field}));')
    lines += [f'    printf("reduction {name} %d\\n", {name.upper()});' for name in REDUCTIONS]
    lines += ["    return 0;", "}"]
    program, binary = tmp_path / f"layout_{source}.c", tmp_path / f"layout_{source}"
    program.write_text("\n".join(lines) + "\n")
    # The library's flags without optimisation (a layout does not depend on it; -O3 takes minutes on steps.c).
    flags = [flag for flag in native.FLAGS if flag not in ("-shared", "-fPIC", "-O3")] + ["-O0", f"-march={native.MARCH}"]
    built = subprocess.run([compiler, *flags, str(program), "-o", str(binary), "-lm"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.splitlines()


@pytest.mark.parametrize("source", sorted({source for source, _, _ in LAYOUTS}))
def test_c_structs_are_the_numpy_item_dtypes(source, tmp_path):
    structs = [(struct, dtype) for s, struct, dtype in LAYOUTS if s == source]
    said = _c_layouts(source, structs, tmp_path)
    expected = []
    for struct, dtype in structs:
        expected.append(f"{struct} {dtype.itemsize}")
        expected += [f"{struct}.{field} {dtype.fields[field][1]} {dtype.fields[field][0].itemsize}" for field in dtype.names]
    expected += [f"reduction {name} {index}" for index, name in enumerate(REDUCTIONS)]
    assert said == expected
