"""The project's documentation holds together: README.md stays short and starts with the two
commands, every relative link in README.md and docs/*.md reaches an existing file (and heading),
and the package diagram in docs/architecture.md draws the imports the code has."""

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)
MERMAID = re.compile(r"^```mermaid\n(.*?)^```", re.MULTILINE | re.DOTALL)
MERMAID_EDGE = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """`text` without fenced code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower-case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(h) for h in HEADING.findall(FENCE.sub("", page.read_text()))}


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move detail to docs/"
    first_block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert lines.index("```bash") <= 2, "the two commands come right after the title"
    assert [line.split()[:2] for line in first_block] == [["make", "demo"], ["make", "test"]]


def test_docs_pages_exist():
    names = {page.name for page in PAGES}
    expected = {"architecture", "ingestion", "curated", "identity", "warehouse", "activation"}
    expected |= {"operations", "configuration", "performance"}
    assert {f"{name}.md" for name in expected} <= names


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in relative_links(page):
            path, _, fragment = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_link_checker_finds_links_and_headings():
    """The checks above would pass on pages where they found nothing: they find what is there."""
    assert "docs/architecture.md" in relative_links(ROOT / "README.md")
    assert "operations.md#one-warm-spark-for-every-run-cdp-spark-server" in relative_links(
        ROOT / "docs" / "performance.md"
    )
    assert anchor("One warm Spark for every run: `cdp spark-server`") == "one-warm-spark-for-every-run-cdp-spark-server"
    assert anchor("The lake's zones") == "the-lakes-zones"
    assert "the-lakes-zones" in anchors(ROOT / "docs" / "architecture.md")


def project_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]


def imported_packages() -> set[tuple[str, str]]:
    """(importer, imported) for every import between the project's packages, at any depth of the code."""
    packages = set(project_packages())
    edges = set()
    for package in packages:
        for module in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                edges |= {(package, n.split(".")[0]) for n in names if n.split(".")[0] in packages - {package}}
    return edges


def drawn_packages() -> set[tuple[str, str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## The packages") :]
    return set(MERMAID_EDGE.findall(MERMAID.search(section).group(1)))


def test_architecture_draws_the_package_imports_the_code_has():
    code, drawn = imported_packages(), drawn_packages()
    assert code, "found no imports between the project's packages"
    missing = sorted(f"{a} --> {b}" for a, b in code - drawn)
    stale = sorted(f"{a} --> {b}" for a, b in drawn - code)
    assert not missing and not stale, (
        "docs/architecture.md's package diagram differs from the code; "
        f"add: {missing or 'nothing'}; remove: {stale or 'nothing'}"
    )
