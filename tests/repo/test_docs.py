"""The README and docs/: every relative link (and image) resolves, anchors included; the README stays short; the
pictures stay small; the docs state facts about the software, not the story of its making."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200
IMAGE_MAX_BYTES = 300_000
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
HISTORY = re.compile(r"\bstop \d+\b|\bthis (task|stop|session)\b|\bearlier session|\btoday\b|\bbefore this pattern\b",
                     re.I)


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code (where a `[x](y)` is not a link)."""
    return CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, inline markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    """Every heading's anchor in a markdown file (a repeated heading gets -1, -2, … as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", md.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def broken_links(md: Path, root: Path = ROOT) -> list[str]:
    """`file: target (why)` for each relative link or image of `md` that does not resolve."""
    out = []
    for target in LINK.findall(prose(md.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            out.append(f"{md.name}: {target} (no such file)")
        elif root.resolve() not in (dest, *dest.parents):
            out.append(f"{md.name}: {target} (outside the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            out.append(f"{md.name}: {target} (no heading #{anchor} in {dest.name})")
    return out


@pytest.mark.parametrize("md", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(md):
    assert broken_links(md) == []


def test_the_checker_finds_broken_links(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.md").write_text("# Title\n\n## Two words: `here`\n", encoding="utf-8")
    (root / "img.png").write_bytes(b"")
    (tmp_path / "outside.md").write_text("# Outside\n", encoding="utf-8")
    md = root / "README.md"
    md.write_text("[ok](docs/a.md) [ok](docs/a.md#two-words-here) ![ok](img.png) [ok](#top) [web](https://x.y/z)\n"
                  "# Top\n`[code](nowhere.md)`\n```\n[fenced](nowhere.md)\n```\n"
                  "[gone](docs/b.md) ![gone](img/none.png) [bad anchor](docs/a.md#three) [up](../outside.md)\n",
                  encoding="utf-8")
    assert broken_links(md, root) == ["README.md: docs/b.md (no such file)",
                                      "README.md: img/none.png (no such file)",
                                      "README.md: docs/a.md#three (no heading #three in a.md)",
                                      "README.md: ../outside.md (outside the repository)"]


def test_slugs_are_githubs():
    assert slug("Many machines: `extract --ray`") == "many-machines-extract---ray"
    assert slug('"Compare with" on unit pages') == "compare-with-on-unit-pages"
    assert slug("How good is the built-in model?") == "how-good-is-the-built-in-model"


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move reference into docs/ (at most {README_MAX_LINES})"


def test_readme_pictures_exist_and_are_small():
    images = [t for t in LINK.findall(prose((ROOT / "README.md").read_text(encoding="utf-8")))
              if t.endswith(".png")]
    assert len(images) >= 2
    for t in images:
        size = (ROOT / t).stat().st_size
        assert size <= IMAGE_MAX_BYTES, f"{t} is {size:,} bytes; `make screenshots` writes optimised PNGs"


def test_docs_state_facts_not_history():
    found = [f"{md.name}: {m.group(0)!r}" for md in pages() for m in HISTORY.finditer(md.read_text(encoding="utf-8"))]
    assert found == [], "docs describe the software as it is, not the story of its making"
