"""MkDocs hook: the repository's files that pages link to, in the site, linked as they are on disk.

Pages are markdown files in docs/ that also read well on disk or on a forge,
so they link the repository's other files by their place relative to the
page: `../figures/fig01_step_size.png` from docs/, `../../figures/x.png` from
docs/how-to/, `../tracer/recorder.py`. This hook adds every file of figures/
(where `make reproduce` renders them) and every other repository file a page
links to (source files, scripts) to the site, at its path in the repository
(`figures/NAME`, `tracer/recorder.py`, as if it were under docs/), and
rewrites those links to point there, so `mkdocs build --strict` checks them
like any other. A link to a markdown file outside docs/ is left alone (and so
fails the strict build): the site has no page for it.
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


def repo_file(target: str, page_dir: pathlib.Path, docs_dir: pathlib.Path) -> pathlib.Path | None:
    """The repository file outside docs/ that `target`, written in a page in `page_dir`, leads to; None otherwise."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    resolved = (page_dir / target).resolve()
    if (not resolved.is_relative_to(ROOT) or resolved.is_relative_to(docs_dir) or not resolved.is_file()
            or resolved.suffix == ".md" or any(part.startswith(".") for part in resolved.relative_to(ROOT).parts)):
        return None
    return resolved


def site_link(target: str, page_src_uri: str, docs_dir: pathlib.Path) -> str:
    """`target` as written in the page at docs/`page_src_uri`; if it leads to a repository file outside docs/,
    the link to that file in the site (relative to the page's source, as mkdocs expects), else `target`."""
    page_dir = (docs_dir / page_src_uri).parent
    resolved = repo_file(target, page_dir, docs_dir)
    if resolved is None:
        return target
    return pathlib.Path(os.path.relpath(docs_dir / resolved.relative_to(ROOT), page_dir)).as_posix()


def on_files(files: Files, config) -> Files:
    docs_dir = pathlib.Path(config["docs_dir"]).resolve()
    wanted = {path for path in FIGURES.rglob("*") if repo_file(os.path.relpath(path, docs_dir), docs_dir, docs_dir)}
    for page in docs_dir.rglob("*.md"):
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            found = repo_file(match.group(2), page.parent, docs_dir)
            if found is not None:
                wanted.add(found)
    for path in sorted(wanted):
        files.append(File(path.relative_to(ROOT).as_posix(), src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs_dir = pathlib.Path(config["docs_dir"]).resolve()
    return LINK.sub(lambda m: m.group(1) + site_link(m.group(2), page.file.src_uri, docs_dir), markdown)
