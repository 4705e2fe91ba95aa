"""The package's imports point down, as BUILD.md's module map draws them: no circle inside
``vgg_keras/`` or ``pipelines/``, each room imports only the rooms below it (``ROOMS``), nothing
imports ``tools/``, the nets import neither TensorFlow nor ``pipelines/``, what a model looks like
on disk (``artifacts.layout``) needs neither Keras nor TensorFlow, library code reads no absl
flags, and every room is of a livable size. Read from the source (ast), imports inside functions
included."""

import ast
import functools
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("vgg_keras", "pipelines")
# The nets, Keras only, any backend (BUILD.md, "Layout"): what their folder holds, and the
# package root that exposes them.
NETS_FOLDER = ROOT / "vgg_keras" / "nets"
# What each room of the TensorFlow side may import of ours, besides itself: the rooms below it.
# The foundation imports nothing else of ours; the input side only the foundation; the nets
# nothing of ours (Keras only).
_BASE = ("pipelines", "vgg_keras.nets")
ROOMS = {
    "pipelines.foundation": (),
    "pipelines": ("pipelines.foundation",),
    "vgg_keras.nets": (),
    "vgg_keras.protocols": _BASE,
    "vgg_keras.compute": ("pipelines.foundation",),
    "vgg_keras.artifacts": _BASE,
    "vgg_keras.training": (*_BASE, "vgg_keras.protocols", "vgg_keras.compute",
                           "vgg_keras.artifacts"),
    "vgg_keras.evaluation": (*_BASE, "vgg_keras.protocols", "vgg_keras.compute",
                             "vgg_keras.artifacts"),
    "vgg_keras.serving": (*_BASE, "vgg_keras.protocols", "vgg_keras.artifacts"),
    "vgg_keras.explain": (*_BASE, "vgg_keras.compute", "vgg_keras.artifacts"),
}
# Rooms of a livable size (STYLE.md): lines of a module; lines of code and parameters of a
# function (its docstring aside; self and cls not counted).
MODULE_LINES, FUNCTION_LINES, PARAMETERS = 400, 60, 10
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


@functools.lru_cache(maxsize=1)
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


def _room(name):
    """The room of ``ROOMS`` a module of ours stands in (the longest that holds it)."""
    found = [room for room in ROOMS if name == room or name.startswith(room + ".")]
    return max(found, key=len) if found else None


def test_each_room_imports_only_the_rooms_below_it():
    modules, graph = _graph()
    wrong = []
    for name, imports in graph.items():
        room = _room(name)
        for target, line in imports:
            ours = _ours(target, modules)
            if ours is None or ours == "vgg_keras" or _room(ours) in (room, None):
                continue
            if _room(ours) not in ROOMS.get(room, ()) and not any(
                    _room(ours).startswith(below + ".") for below in ROOMS.get(room, ())):
                wrong.append(f"{modules[name].relative_to(ROOT)}:{line} imports {ours}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("rule", ["tools", "nets", "layout", "flags"])
def test_imports_point_down(rule):
    modules, graph = _graph()
    wrong = []
    for name, imports in graph.items():
        for target, line in imports:
            top = target.split(".")[0]
            if (rule == "tools" and top == "tools"
                    or rule == "nets" and name in _nets()
                    and top in ("tensorflow", "pipelines", "jax", "torch")
                    and (name, top) not in OPTIONAL_READERS
                    or rule == "layout" and name == "vgg_keras.artifacts.layout"
                    and top in ("tensorflow", "keras")
                    or rule == "flags" and target in ("absl.flags", "absl.app")):
                wrong.append(f"{modules[name].relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_walk_sees_every_module_and_real_edges():
    """The checks above read what they should: every module, and imports known to exist."""
    modules, graph = _graph()
    assert {"vgg_keras.artifacts.layout", "vgg_keras.protocols", "vgg_keras.training.loop",
            "pipelines.dataset_info", "pipelines.image_header",
            "pipelines.foundation.storage"} <= set(modules)
    assert any(target == "vgg_keras.artifacts.loading"
               for target, _ in graph["vgg_keras.evaluation.evaluator"])
    assert any(target == "pipelines.image_header" for target, _ in graph["pipelines.preprocessing"])
    assert set(ROOMS) - {"vgg_keras.protocols"} <= {_room(name) for name in modules}


def test_the_folders_show_the_rules():
    """The nets' folder holds every module that needs only Keras, the package root no more than
    its __init__ and the protocols its rooms share, and the foundation a folder of its own: the
    room of a module says what it may import."""
    root = sorted(path.name for path in (ROOT / "vgg_keras").glob("*.py"))
    assert root == ["__init__.py", "protocols.py"], root
    assert {"builder", "configs", "layers", "initializers", "features", "losses", "stats",
            "keras_weights", "torch_weights", "pretrained", "published", "heads",
            "checks"} <= {path.stem for path in NETS_FOLDER.glob("*.py")}
    rooms = {path.name for path in (ROOT / "vgg_keras").iterdir() if path.is_dir()
             and (path / "__init__.py").exists()}
    assert rooms == {"nets", "artifacts", "compute", "training", "evaluation", "serving",
                     "explain"}
    assert {path.stem for path in (ROOT / "pipelines" / "foundation").glob("*.py")} == {
        "__init__", "storage", "errors", "settings", "progress", "tf_runtime", "lease"}


def _oversized(path, root=ROOT):
    """What of ``path`` is past its size: the module's lines, each function's lines of code
    (its def line and body, its docstring aside) and parameters."""
    source = path.read_text()
    found = []
    if source.count("\n") > MODULE_LINES:
        found.append(f"{path.relative_to(root)}: {source.count(chr(10))} lines")
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        lines = node.end_lineno - node.lineno + 1
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str):
            lines -= first.end_lineno - first.lineno + 1
        arguments = node.args
        count = len(arguments.posonlyargs + arguments.args + arguments.kwonlyargs)
        if arguments.args and arguments.args[0].arg in ("self", "cls"):
            count -= 1
        if lines > FUNCTION_LINES or count > PARAMETERS:
            found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {lines} lines of "
                         f"code, {count} parameters")
    return found


def test_every_room_is_of_a_livable_size():
    """Modules of at most 400 lines; functions of at most 60 lines of code and 10 parameters."""
    over = [found for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            for found in _oversized(path)]
    assert not over, "\n".join(over)


def test_the_size_check_measures_what_it_says(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    path = tmp_path / "probe.py"
    path.write_text(f'def f(a, b, c, d, e, f, g, h, i, j, k):\n    """Doc."""\n{body}\n'
                    + "\n" * 340)
    (module, function) = _oversized(path, tmp_path)
    assert module == "probe.py: 402 lines", module
    assert function == "probe.py:1 f: 61 lines of code, 11 parameters", function
    path.write_text(f'def f(self, b, c, d, e, f, g, h, i, j, k):\n    """Doc."""\n{body[:-10]}\n')
    assert _oversized(path, tmp_path) == []


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
    """The crop of §2.1 is one constant, the nets' (the input side takes the crop it is told):
    the number 224 stands in no other line of code."""
    import io
    import tokenize

    found = []
    for path in [*(ROOT / "vgg_keras").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py"),
                 *((ROOT / "tools" / f"{name}.py") for name in PROGRAMS)]:
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        found += [(str(path.relative_to(ROOT)), token.line.strip()) for token in tokens
                  if token.type == tokenize.NUMBER and token.string == "224"]
    assert sorted(path for path, _ in found) == ["vgg_keras/nets/configs.py"], found
    assert all(line.startswith("CROP_SIZE = 224") for _, line in found), found
