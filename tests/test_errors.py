"""How failures read: TensorFlow's framing stripped from an assertion's own text (its escaping
undone, UTF-8 paths included), a full disk said as such, and a bug left to its traceback."""

import errno

import pytest
import tensorflow as tf

from pipelines.foundation import errors
from vgg_keras.nets import configs


def _assertion_error(text, graph):
    def check(value):
        with tf.control_dependencies([tf.debugging.Assert(False, [value])]):
            return tf.identity(value)

    try:
        (tf.function(check) if graph else check)(tf.constant(text))
    except tf.errors.InvalidArgumentError as error:
        return error
    raise AssertionError("the assertion did not fail")


def test_an_assertion_reads_as_its_own_text():
    text = "label 4 of x's file in shard /data/café/猫/train-00001 is outside [0, 4)"
    graph = _assertion_error(text, graph=True)  # as in tf.data and the training step
    assert "assertion failed: [" in graph.message and "\\'" in graph.message  # escaped
    assert errors.one_line(graph) == text
    assert errors.user_message(graph) == text
    assert errors.one_line(_assertion_error(text, graph=False)) == text


def test_tensorflow_framing_is_dropped():
    error = tf.errors.DataLossError(None, None, "Graph execution error:\n\nDetected at node x\n"
                                    "corrupted record at 1028\n\t [[{{node y}}]]")
    assert errors.one_line(error) == "corrupted record at 1028"


def test_user_errors_bugs_and_a_full_disk():
    assert errors.user_message(errors.UserError("--batch_size=15 is not divisible")) == (
        "--batch_size=15 is not divisible")
    # Ours, written to be read whole: a list of changed settings keeps its lines.
    assert errors.user_message(errors.UserError("holds another run:\n  --batch_size=16 there")) \
        == "holds another run:\n  --batch_size=16 there"
    assert errors.user_message(FileNotFoundError("no shards found in /x")) == (
        "no shards found in /x")
    # A ValueError our code did not raise as the user's (inside Keras, or a bug of ours).
    assert errors.user_message(ValueError("Input 0 of layer fc1 is incompatible")) is None
    full = OSError(errno.ENOSPC, "No space left on device", "/models/d/ckpt-7.data")
    assert errors.user_message(full).startswith(
        "the disk is full writing /models/d/ckpt-7.data (No space left on device): free space")
    assert errors.user_message(KeyError("fc1")) is None  # a bug: keeps its traceback
    assert errors.user_message(TypeError("unsupported operand")) is None


def test_user_input_marks_a_libraries_judgement_of_the_users_value():
    with pytest.raises(errors.UserError, match="unknown VGG configuration 'F'"):
        with errors.user_input():
            configs.resolve_config("F")  # the nets raise ValueError, as Keras does
    with pytest.raises(KeyError):  # only ValueErrors: anything else stays a bug
        with errors.user_input():
            raise KeyError("fc1")


def test_a_tensorflow_error_about_a_path_is_the_users_and_others_are_bugs():
    missing = tf.errors.NotFoundError(None, None, "/data/x/train-00000-of-01024; No such file")
    assert errors.user_message(missing) == "/data/x/train-00000-of-01024; No such file"
    assert errors.user_message(tf.errors.InternalError(None, None, "cuDNN failed")) is None
