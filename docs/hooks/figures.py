"""MkDocs hook: the repository's figures/ in the site, linked from pages as they are on disk.

The figures live where `make reproduce` writes them, at the repository's top,
not in docs/. This adds each one to the site's files as `figures/NAME` (as if
it were docs/figures/NAME), and rewrites a page's links that lead to them
from the page's place in the repository (`../figures/x.png` from docs/,
`../../figures/x.png` from docs/how-to/: the links that work when the
markdown is read on disk or on a forge) into links to those site files, which
`mkdocs build --strict` then checks like any other.
"""

from __future__ import annotations

import os
import pathlib
import re

from mkdocs.structure.files import File, Files

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIGURES = ROOT / "figures"
# A markdown image or link target, or an HTML src/href attribute.
LINK = re.compile(r"(\]\(|src=\"|href=\")([^)\"#\s]+)")


def on_files(files: Files, config) -> Files:
    for path in sorted(FIGURES.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(FIGURES).parts):
            files.append(File(path.relative_to(ROOT).as_posix(), src_dir=str(ROOT), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files


def site_link(target: str, page_src_uri: str, docs_dir: pathlib.Path) -> str:
    """`target` as written in the page at docs/`page_src_uri`; if it leads to a file under figures/, the link to it
    in the site (relative to the page's source, as mkdocs expects), else `target` unchanged."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return target
    page_dir = (docs_dir / page_src_uri).parent
    resolved = (page_dir / target).resolve()
    if not resolved.is_relative_to(FIGURES):
        return target
    virtual = docs_dir / "figures" / resolved.relative_to(FIGURES)
    return pathlib.Path(os.path.relpath(virtual, page_dir)).as_posix()


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs_dir = pathlib.Path(config["docs_dir"]).resolve()
    return LINK.sub(lambda m: m.group(1) + site_link(m.group(2), page.file.src_uri, docs_dir), markdown)
