"""MkDocs hook: the repository's figures/ served at figures/ in the site, so pages show the rendered figures.

The figures live where `make reproduce` writes them, not in docs/; this adds
each one to the site's files (as if it were docs/figures/NAME), so a page
links it as `figures/NAME` (or `../figures/NAME` one level down) and
`mkdocs build --strict` checks those links like any other.
"""

from __future__ import annotations

import pathlib

from mkdocs.structure.files import File, Files

FIGURES = pathlib.Path(__file__).resolve().parents[2] / "figures"


def on_files(files: Files, config) -> Files:
    for path in sorted(FIGURES.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            files.append(File(f"figures/{path.name}", src_dir=str(FIGURES.parent), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files
