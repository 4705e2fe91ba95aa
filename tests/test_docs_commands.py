"""README.md's and BUILD.md's commands and snippets, as a reader copies them: every command that
runs one of our programs passes that program's flag parsing and checks (flags that exist,
values that parse), every flag it passes is listed by the installed script's --help, and every
Python snippet of README.md runs, on generated data.

Our own harness rather than sybil or pytest-markdown-docs: those run a block as written, and
ours name ImageNet's folders and keras.applications' downloaded weights, which exist on no test
machine; the harness puts small generated stand-ins at those names, and it checks the commands'
flags without running them, which neither plugin does.
"""

import json
import os
import pathlib
import re
import shlex
import sys

import numpy as np
import pytest
import safetensors.numpy

from tests import programs
from tests.conftest import write_shards

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
DOCS = ("README.md", "BUILD.md")
PROGRAMS = {"vgg-convert": "convert_imagenet", "vgg-train": "train", "vgg-evaluate": "evaluate",
            "vgg-export": "export", "vgg-predict": "predict", "vgg-describe": "describe",
            "vgg-data-service": "data_service", "vgg-explain": "explain"}
# What a shell would expand, as a reader's shell might.
SHELL = {"$(nproc)": "8", "$HOME": "/home/user", "$(hostname)": "host1"}
# The line above a block that needs what no test machine has.
NEEDS = re.compile(r"^_Needs (ImageNet|a GPU|TF Serving|a TPU|a bucket)")


def fenced_blocks(doc, language):
    """``[(first line number, preceding text line, block text)]`` of ``doc``'s fenced blocks in
    ``language``."""
    lines = (ROOT / doc).read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].strip() == f"```{language}":
            end = lines.index("```", index + 1)
            before = next((line for line in reversed(lines[:index]) if line.strip()), "")
            blocks.append((index + 1, before, "\n".join(lines[index + 1:end])))
            index = end
        index += 1
    return blocks


def commands(text):
    """The invocations of our programs in a shell block: ``[(program, [arguments])]``."""
    for key, value in SHELL.items():
        text = text.replace(key, value)
    found, pending = [], ""
    for line in text.replace("\\\n", " ").splitlines():
        try:  # a quoted string may span lines (TF_CONFIG='{...\n...}')
            words = shlex.split(pending + line, comments=True)
        except ValueError:
            pending += line + "\n"
            continue
        pending = ""
        for start, word in enumerate(words):
            module = PROGRAMS.get(word)
            if word == "-m" and start + 1 < len(words) and words[start + 1].startswith("tools."):
                module, start = words[start + 1].removeprefix("tools."), start + 1
            if module:
                arguments = []
                for argument in words[start + 1:]:
                    if argument in ("|", ";", "&&", "||"):
                        break
                    if argument != "...":  # "and the rest of the flags" in the docs
                        arguments.append(argument)
                found.append((module, arguments))
                break
    return found


def documented_commands():
    return [(doc, number, module, arguments) for doc in DOCS
            for number, _, text in fenced_blocks(doc, "sh")
            for module, arguments in commands(text)]


# The child that parses one program's documented commands with its own flags and checks.
CHECKER = """
import importlib, json, sys
from absl import flags
module = importlib.import_module("tools." + sys.argv[1])
failures = []
for where, arguments in json.loads(sys.argv[2]):
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS([sys.argv[1], *arguments])
        if hasattr(module, "check_flags"):
            module.check_flags()
    except Exception as error:
        failures.append(f"{where}: {type(error).__name__}: {error}")
print(json.dumps(failures))
"""


@pytest.mark.slow
def test_every_documented_command_parses_with_its_programs_flags():
    by_module = {}
    for doc, number, module, arguments in documented_commands():
        by_module.setdefault(module, []).append((f"{doc}:{number}", arguments))
    assert set(PROGRAMS.values()) <= set(by_module)  # every program is documented
    assert len(by_module["train"]) >= 10
    failures = []
    for module, invocations in sorted(by_module.items()):
        result = programs.run([sys.executable, "-c", CHECKER, module, json.dumps(invocations)],
                              cwd=ROOT, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        failures += json.loads(result.stdout.splitlines()[-1])
    assert not failures, "\n".join(failures)


def test_the_checker_catches_what_a_reader_would_hit():
    result = programs.run([sys.executable, "-c", CHECKER, "train", json.dumps([
        ["bad", ["--config=D", "--data_dir=/d", "--model_dir=/m", "--dtyp=bfloat16"]],
        ["enum", ["--data_dir=/d", "--model_dir=/m", "--lr_schedule=linear"]],
        ["init", ["--data_dir=/d", "--model_dir=/m", "--init=from_b=/x"]],
        ["scale", ["--data_dir=/d", "--model_dir=/m", "--scale=256,x"]],
        ["good", ["--data_dir=/d", "--model_dir=/m", "--init=from_a=/no/such/file.keras"]],
    ])], cwd=ROOT, timeout=300)
    failures = json.loads(result.stdout.splitlines()[-1])
    assert [f.split(":")[0] for f in failures] == ["bad", "enum", "init", "scale"]


@pytest.mark.slow
def test_every_flag_the_docs_pass_is_listed_by_the_scripts_help():
    flags_used = {}
    for _, _, module, arguments in documented_commands():
        for argument in arguments:
            if argument.startswith("--"):
                flags_used.setdefault(module, set()).add(argument[2:].split("=")[0])
    scripts = {module: script for script, module in PROGRAMS.items()}
    for module, names in sorted(flags_used.items()):
        if module not in scripts:  # the benchmarks: run as python -m, not installed
            continue
        result = programs.run([str(BIN / scripts[module]), "--help"], timeout=300)
        listed = set(re.findall(r"^  --(?:\[no\])?(\w+):", result.stdout, re.MULTILINE))
        missing = {name for name in names
                   if name not in listed and name.removeprefix("no") not in listed}
        assert not missing, (scripts[module], sorted(missing))
        assert "Try --helpfull" in result.stdout


def test_blocks_that_need_imagenet_a_gpu_tf_serving_a_tpu_or_a_bucket_say_so():
    for doc in DOCS:
        for number, before, text in fenced_blocks(doc, "sh"):
            needs = any(word in text.lower() for word in ("imagenet", "tensorflow_model_server",
                                                          "[cuda", "[gpu]", "nvidia", "gs://",
                                                          "--tpu"))
            assert not needs or NEEDS.match(before), (
                f"{doc}:{number}: a block that needs ImageNet, a GPU, TF Serving, a TPU or a "
                "bucket without a "
                f"'_Needs ...' line above it (found {before!r})")


@pytest.fixture(scope="module")
def snippet_folder(tmp_path_factory):
    """A working folder with small stand-ins at the names the snippets use: keras.applications'
    VGG16 weights file, timm's vgg16_bn in a Hugging Face cache (``HF_HOME``: random weights,
    their layouts) and a data folder for ImageNet's."""
    import keras

    from tests import hub_server
    from tests.conftest import write_applications_h5
    from tests.test_torch_weights import timm_state
    from tests.test_torch_weights import torchvision_state

    folder = tmp_path_factory.mktemp("snippets")
    write_applications_h5(keras.applications.VGG16(weights=None),
                          folder / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    hub_server.lay_out_cache(folder / "hf_home" / "hub", "timm/vgg16_bn.tv_in1k",
                             "model.safetensors", safetensors.numpy.save(
                                 timm_state(torchvision_state("D", True, 224), 224)))
    data = write_shards(folder / "imagenet", train_per_class=4, val_per_class=2,
                        size_range=(40, 64))[0]
    # An ONNX export of a tiny net at /deploy/vgg16 (its first version), and a photo.
    from pipelines import synthetic
    from tests.conftest import build_tiny
    from vgg_keras.serving import export
    from vgg_keras.serving.config import ServingSettings

    export.export_model(build_tiny("A", num_classes=1000), str(folder / "deploy"),
                        ServingSettings(model_name="vgg16", format=("onnx",)))
    (folder / "cat.jpg").write_bytes(synthetic.encode(synthetic.draw_scene(
        0, np.random.default_rng(0), 60, 80)))
    return folder, data


# What each snippet's result must be, checked after it ran (by its first line's number).
AFTER = {
    "make_train_dataset": "images, labels = next(iter(train)); "
                          "assert tuple(images.shape) == (256, 224, 224, 3), images.shape",
    "features = taps(": "assert features['block1_conv2'].shape == (1, 128, 128, 64); "
                        "assert pooled.output.shape == (None, 512)",
    "net = vgg_keras.build_pretrained": "assert vgg_keras.nets.builder.normalization_of(net) "
                                        "== 'torchvision'; "
                                        "assert loss.style_layers == ('block1_conv2', "
                                        "'block2_conv2')",
    "to_conv_head": "assert probabilities.shape == (1, 1000)",
    "crop = vgg_keras.preprocess_image": "assert probabilities.shape == (1, 1000) and "
                                         "crop.dtype == 'uint8'",
    "reference_client.preprocess": "assert crop.shape == (metadata['crop_size'],) * 2 + (3,); "
                                   "assert crop.dtype == 'uint8'",
    "losses.style_transfer_loss": "assert history[-1] < history[0], history",
    "explain.grad_cam": "assert heat.shape == (1, 224, 224) and 0 <= heat.min() <= heat.max() "
                        "<= 1; assert dense.shape == photo.shape[:2]; "
                        "assert attributions.shape == crops.shape",
}


def _python_snippets():
    return [pytest.param(number, text, id=f"README.md:{number}")
            for number, _, text in fenced_blocks("README.md", "python")]


@pytest.mark.slow
@pytest.mark.parametrize("number, text", _python_snippets())
def test_readme_python_snippet_runs(snippet_folder, number, text):
    folder, data = snippet_folder
    checks = [check for name, check in AFTER.items() if name in text]
    assert checks, f"README.md:{number}: a snippet with no check of its result here"
    script = folder / f"snippet_{number}.py"
    script.write_text(text.replace("/data/imagenet-tfrecords", str(data)).replace(
        "/deploy/", f"{folder}/deploy/") + "\n"
                      + "\n".join(checks) + "\n")
    offline = dict(os.environ, HF_HOME=str(folder / "hf_home"), HF_HUB_OFFLINE="1")
    result = programs.run([sys.executable, str(script)], cwd=folder, env=offline, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
