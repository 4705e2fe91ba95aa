"""Table 1 as data: the notation, the variants and the names users may type."""

import pytest

import vgg_keras
from vgg_keras.nets import configs


def _convs(tokens):
    return [configs.parse_layer(t) for t in tokens if t.startswith("conv")]


def test_table_has_the_six_nets_of_table_1():
    assert list(configs.CONFIGS) == ["A", "A-LRN", "B", "C", "D", "E"]


@pytest.mark.parametrize(
    "name, blocks",
    [
        ("A", [[64], [128], [256, 256], [512, 512], [512, 512]]),
        ("B", [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]]),
        ("D", [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3]),
        ("E", [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4]),
    ],
)
def test_blocks_read_as_table_1(name, blocks):
    tokens = configs.CONFIGS[name]
    found, current = [], []
    for token in tokens:
        if token == "maxpool":
            found.append(current)
            current = []
        else:
            current.append(configs.parse_layer(token).filters)
    assert found == blocks and current == []


def test_c_has_1x1_convs_closing_blocks_3_to_5():
    kernels = [c.kernel_size for c in _convs(configs.CONFIGS["C"])]
    assert kernels == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]
    assert configs.CONFIGS["C"][8] == "conv1-256"


def test_a_lrn_is_a_with_lrn_after_the_first_conv():
    with_lrn = list(configs.CONFIGS["A-LRN"])
    assert with_lrn[1] == "LRN"
    assert with_lrn[:1] + with_lrn[2:] == list(configs.CONFIGS["A"])


def test_every_net_has_five_pools_and_the_shared_classifier():
    for tokens in configs.CONFIGS.values():
        assert tokens.count("maxpool") == 5 and tokens[-1] == "maxpool"
    # The builder's default head is the classifier the table states (narrow convs: cheap).
    model = vgg_keras.build_vgg("A", input_shape=(32, 32, 3), width=1 / 16)
    fc = [f"FC-{model.get_layer(name).units}" for name in ("fc1", "fc2", "predictions")]
    activation = model.layers[-1].activation.__name__  # an Activation layer, in float32
    assert [*fc, "soft-max" if activation == "softmax" else activation] == list(
        configs.CLASSIFIER)


@pytest.mark.parametrize(
    "given, expected",
    [("D", ("D", False)), ("d-bn", ("D-BN", True)), ("VGG16", ("D", False)),
     ("vgg16_bn", ("D-BN", True)), ("A-LRN", ("A-LRN", False)), ("vgg19", ("E", False))],
)
def test_resolve_config_names_and_variants(given, expected):
    name, tokens, batch_norm = configs.resolve_config(given)
    assert (name, batch_norm) == expected
    assert tokens == configs.CONFIGS[expected[0].removesuffix("-BN")]


def test_unknown_config_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown VGG configuration 'F'.*A-LRN.*E-BN"):
        configs.resolve_config("F")


@pytest.mark.parametrize("token", ["conv3", "conv3-0", "fc-4096", "LRN5", "pool", 3])
def test_tokens_outside_the_notation_are_rejected(token):
    with pytest.raises(ValueError, match="unknown layer"):
        configs.parse_layer(token)


def test_literal_spec_is_validated():
    assert configs.resolve_config(["conv3-8", "maxpool"])[0] == "custom"
    with pytest.raises(ValueError, match="unknown layer 'conv-8'"):
        configs.resolve_config(["conv-8", "maxpool"])


def test_config_names_lists_bn_variants_after_the_nets():
    assert configs.config_names() == ["A", "A-LRN", "B", "C", "D", "E",
                                      "A-BN", "A-LRN-BN", "B-BN", "C-BN", "D-BN", "E-BN"]
