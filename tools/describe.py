"""Prints, for each VGG configuration, what Tables 1–2 of the paper state, computed from the built
models: weight layers, parameters, forward GFLOPs and output shape.

    vgg-describe                      # the six nets of Table 1
    vgg-describe --batch_norm         # their batch-norm variants
    vgg-describe --configs=A,D --input_size=384 --head=conv
"""

import json

from absl import app
from absl import flags

from pipelines import errors

from . import program

_CONFIGS = flags.DEFINE_list("configs", None, "Configurations to describe (default: all six).")
_BATCH_NORM = flags.DEFINE_bool("batch_norm", False, "Describe the batch-norm variants.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", 224, "Side of the square input image.")
_HEAD = flags.DEFINE_enum("head", "fc", ["fc", "conv", "dense"], "Classifier head: fc (the "
                          "fully connected layers; dense is its other name) or conv (§3.2).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Number of classes.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object per configuration instead.")


def describe(config, *, batch_norm=False, input_size=224, head="fc", num_classes=1000):
    """Returns a dict of the counts of one configuration, from the built model."""
    import keras

    import vgg_keras

    model = vgg_keras.build_vgg(config, num_classes, batch_norm=batch_norm, head=head,
                                input_shape=(input_size, input_size, 3))
    name = vgg_keras.resolve_config(config)[0]
    if batch_norm and not name.endswith("-BN"):
        name += "-BN"
    row = {
        "config": name,
        "weight_layers": vgg_keras.count_weight_layers(model),
        "parameters": vgg_keras.count_parameters(model),
        "trainable_parameters": vgg_keras.count_parameters(model, trainable_only=True),
        "gflops": vgg_keras.count_flops(model) / 1e9,
        "output_shape": list(model.output.shape),
    }
    del model
    keras.backend.clear_session()
    return row


def format_table(rows):
    """Returns the rows as a plain-text table."""
    lines = [f"{'config':<8} {'weight layers':>13} {'parameters':>13} {'GFLOPs':>8}  output",
             "-" * 58]
    for row in rows:
        lines.append(f"{row['config']:<8} {row['weight_layers']:>13} {row['parameters']:>13,} "
                     f"{row['gflops']:>8.2f}  {tuple(row['output_shape'])}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import vgg_keras

    configs = _CONFIGS.value or vgg_keras.config_names(batch_norm_variants=False)
    with errors.user_input():  # the nets judge the names and sizes given
        for config in configs:
            vgg_keras.resolve_config(config)  # a clear error before building anything
    rows = []
    for config in configs:
        with errors.user_input():
            row = describe(config, batch_norm=_BATCH_NORM.value, input_size=_INPUT_SIZE.value,
                           head=_HEAD.value, num_classes=_NUM_CLASSES.value)
        if _JSON.value:
            print(json.dumps(row))
        rows.append(row)
    if not _JSON.value:
        print(f"VGG configurations at {_INPUT_SIZE.value}×{_INPUT_SIZE.value}, {_HEAD.value} "
              "head (GFLOPs: one image, forward, multiply-add = 2 FLOPs)")
        print(format_table(rows))


def run():
    program.run(main, "vgg-describe")


if __name__ == "__main__":
    run()
