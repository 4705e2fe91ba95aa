"""The documents say what the code is: BUILD.md's layout map, the one map of the code, names every
module and program, one line each, and nothing that does not exist; README.md points to it."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAPPED = ("vgg_keras", "pipelines", "tools")


def _layout(document, heading):
    """The files a document's layout map names, as paths relative to the repository."""
    text = (ROOT / document).read_text()
    block = text[text.index(heading):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    paths, folders = [], []
    for line in block.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match:
            continue
        depth, name = len(match.group(1)) // 2, match.group(2)
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            paths.append("/".join([*folders, name]))
    return set(paths)


def _files():
    return {path.relative_to(ROOT).as_posix() for folder in MAPPED
            for path in (ROOT / folder).rglob("*.py")
            if not (path.name == "__init__.py" and path.parent.name != "vgg_keras")}


def test_the_layout_map_names_every_module_and_nothing_else():
    document = "BUILD.md"
    mapped = {p for p in _layout(document, "## Layout") if p.split("/")[0] in MAPPED}
    files = _files()
    assert not files - mapped, f"{document} does not map {sorted(files - mapped)}"
    assert not mapped - files, f"{document} maps what does not exist: {sorted(mapped - files)}"


def test_the_map_is_written_once():
    readme = (ROOT / "README.md").read_text()
    assert "(BUILD.md#layout)" in readme
    assert "  training/" not in readme and "  inputs.py" not in readme  # no second map
