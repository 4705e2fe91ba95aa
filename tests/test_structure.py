"""The package's imports point down, as BUILD.md's module map draws them: no circle inside
``vgg_keras/`` or ``pipelines/``, nothing imports ``tools/``, ``pipelines/`` never imports
``vgg_keras/``, the nets import neither TensorFlow nor ``pipelines/``, and library code reads no
absl flags. Read from the source (ast), imports inside functions included."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("vgg_keras", "pipelines")
# The nets, Keras only, any backend (BUILD.md, "Layout"): what their folder holds, and the
# package root that exposes them.
NETS_FOLDER = ROOT / "vgg_keras" / "nets"
ROOT_MODULES = 4  # at most: the package's own __init__ and the owners shared by its rooms
# A net module may import these only to read a file format, where installed (torch's .pth
# pickles); the nets never need them.
OPTIONAL_READERS = {("vgg_keras.nets.torch_weights", "torch")}


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _nets():
    return {"vgg_keras"} | {_module_name(path) for path in NETS_FOLDER.rglob("*.py")}


def _modules():
    return {_module_name(path): path for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))}


def _imports(path, known):
    """(imported name, line) of every import in a file; ``from P import m`` of a module m of
    ours counts as importing ``P.m``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.append((candidate if candidate in known else node.module, node.lineno))
    return found


def _graph():
    modules = _modules()
    return modules, {name: _imports(path, modules) for name, path in modules.items()}


def _ours(name, modules):
    """The module of ours an import refers to (a package's ``__init__`` for a package)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _find_circle(edges):
    """A circle of ``{module: [imported modules]}`` as a list (first = last), or None."""
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in edges.get(name, ()):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[name] = "done"
        return None

    for name in sorted(edges):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_no_import_circle():
    modules, graph = _graph()
    edges = {name: sorted({_ours(target, modules) for target, _ in imports} - {None, name})
             for name, imports in graph.items()}
    circle = _find_circle(edges)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_finder_finds_circles():
    assert _find_circle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _find_circle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


@pytest.mark.parametrize("rule", ["tools", "pipelines_to_vgg_keras", "nets", "flags"])
def test_imports_point_down(rule):
    modules, graph = _graph()
    wrong = []
    for name, imports in graph.items():
        for target, line in imports:
            top = target.split(".")[0]
            if (rule == "tools" and top == "tools"
                    or rule == "pipelines_to_vgg_keras" and name.startswith("pipelines")
                    and top == "vgg_keras"
                    or rule == "nets" and name in _nets()
                    and top in ("tensorflow", "pipelines", "jax", "torch")
                    and (name, top) not in OPTIONAL_READERS
                    or rule == "flags" and target in ("absl.flags", "absl.app")):
                wrong.append(f"{modules[name].relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_walk_sees_every_module_and_real_edges():
    """The checks above read what they should: every module, and imports known to exist."""
    modules, graph = _graph()
    assert {"vgg_keras.artifacts", "vgg_keras.protocols", "vgg_keras.training.loop",
            "pipelines.dataset_info", "pipelines.image_header"} <= set(modules)
    assert any(target == "vgg_keras.artifacts"
               for target, _ in graph["vgg_keras.evaluation.evaluator"])
    assert any(target == "pipelines.image_header" for target, _ in graph["pipelines.preprocessing"])


def test_the_folders_show_the_rules():
    """The nets' folder holds every module that needs only Keras, and the package root no more
    than its __init__ and the owners its rooms share: the room of a module says what it may
    import."""
    root = sorted(path.name for path in (ROOT / "vgg_keras").glob("*.py"))
    assert len(root) <= ROOT_MODULES, root
    assert {"builder", "configs", "layers", "initializers", "features", "losses", "stats",
            "keras_weights", "torch_weights", "pretrained"} <= {
        path.stem for path in NETS_FOLDER.glob("*.py")}
    rooms = {path.name for path in (ROOT / "vgg_keras").iterdir() if path.is_dir()
             and (path / "__init__.py").exists()}
    assert rooms == {"nets", "training", "evaluation", "serving"}


PROGRAMS = ("convert_imagenet", "evaluate", "export", "predict", "describe", "data_service",
            "train")


def test_every_program_declares_its_flags_through_settings():
    """No program defines a flag of its own one at a time: each derives them from a settings
    class (tools/program.py), where each setting is declared once."""
    for name in PROGRAMS:
        source = (ROOT / "tools" / f"{name}.py").read_text()
        assert "DEFINE_" not in source, name
        assert "program.Settings(" in source, name


def test_the_shared_defaults_are_declared_once():
    """The crop of §2.1 is one constant of the nets and one of the input side (which imports
    nothing of ours): the number 224 stands in no other line of code."""
    import io
    import tokenize

    found = []
    for path in [*(ROOT / "vgg_keras").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py"),
                 *((ROOT / "tools" / f"{name}.py") for name in PROGRAMS)]:
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        found += [(str(path.relative_to(ROOT)), token.line.strip()) for token in tokens
                  if token.type == tokenize.NUMBER and token.string == "224"]
    assert sorted(path for path, _ in found) == ["pipelines/input_config.py",
                                                 "vgg_keras/nets/configs.py"], found
    assert all(line.startswith("CROP_SIZE = 224") for _, line in found), found
