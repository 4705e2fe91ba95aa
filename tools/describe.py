"""vgg-describe: prints, for each VGG configuration, what Tables 1–2 of the paper state, computed
from the built models: weight layers, parameters, forward GFLOPs and output shape.

    vgg-describe                      # the six nets of Table 1
    vgg-describe --batch_norm         # their batch-norm variants
    vgg-describe --configs=A,D --input_size=384 --head=conv
    vgg-describe --weights            # each net's published ImageNet weights, and if cached
"""

import dataclasses
import json

from absl import app

from pipelines.foundation import errors
from pipelines.foundation import settings as declared
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting
from vgg_keras.nets import configs as net_configs

from . import program


def _names(value):
    return tuple(name.strip() for name in str(value).split(",") if name.strip())


@dataclasses.dataclass(frozen=True, kw_only=True)
class DescribeConfig:
    """Which nets ``vgg-describe`` builds and counts, and how it prints them. (Declared here: the
    nets it describes import nothing but Keras.)"""

    configs: tuple | None = setting(None, "Configurations to describe (default: all six).",
                                    parse=_names, text=",".join)
    batch_norm: bool = setting(False, "Describe the batch-norm variants.")
    input_size: int = setting(net_configs.CROP_SIZE, "Side of the square input image.",
                              check=at_least(1))
    head: str = setting("fc", "Classifier head: fc (the fully connected layers; dense is its "
                              "other name) or conv (§3.2).", choices=("fc", "conv", "dense"))
    num_classes: int = setting(1000, "Number of classes.", check=at_least(1))
    width: float = setting(1.0, "Multiplier of every convolution's filters (as vgg-train's).",
                           check=(lambda value: value > 0, "> 0"))
    fc_units: int = setting(4096, "Units of fc1 and fc2 (as vgg-train's).", check=at_least(1))
    json: bool = setting(False, "Print one JSON object per configuration instead.")
    weights: bool = setting(False, "List each net's published ImageNet weights instead: the "
                                   "kinds that name them (--init/--weights=KIND), source, "
                                   "size, the top-1/top-5 their publisher measured, and "
                                   "whether they are in the cache (nothing is downloaded).")

    def validate(self):
        declared.check_settings(self)


SETTINGS = program.Settings(DescribeConfig, __name__)


def describe(config, *, batch_norm=False, input_size=net_configs.CROP_SIZE, head="fc",
             num_classes=1000, width=1.0, fc_units=4096):
    """Returns a dict of the counts of one configuration, from the built model."""
    import keras

    import vgg_keras

    model = vgg_keras.build_vgg(config, num_classes, batch_norm=batch_norm,
                                head=vgg_keras.Head(head, fc_units=fc_units),
                                input_shape=(input_size, input_size, 3), width=width)
    row = {
        "config": net_configs.variant_name(config, batch_norm),
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


def published_rows(names=None, batch_norm=False):
    """One dict per published weights file (of the nets ``names``, else all): its net, kinds,
    source, file, size, the accuracy its publisher measured, and its path in the cache (or
    None)."""
    from vgg_keras.nets import downloads
    from vgg_keras.nets import published

    entries = (published.published_weights() if not names else
               [e for name in names
                for e in published.published_weights(net_configs.variant_name(name, batch_norm))])
    return [{"config": entry.config, "kinds": list(entry.kinds), "source": entry.source,
             "file": entry.file, "size_bytes": entry.size, "top1": entry.top1,
             "top5": entry.top5, "measured_by": entry.measured_by,
             "cache": downloads.cache_dir(entry), "cached": downloads.cached_file(entry)}
            for entry in entries]


def format_published(rows):
    """The rows of ``published_rows`` as a plain-text table, and the caches they live in."""
    lines = [f"{'config':<6} {'--init/--weights':<27} {'size':>6} {'top-1':>7} {'top-5':>7}  "
             f"{'cached':<6}  source", "-" * 100]
    for row in rows:
        lines.append(f"{row['config']:<6} {', '.join(row['kinds']):<27} "
                     f"{row['size_bytes'] / 1e6:>3.0f} MB {row['top1']:>6.2f}% "
                     f"{row['top5']:>6.2f}%  {'yes' if row['cached'] else 'no':<6}  "
                     + (row["source"] if row["source"].endswith(row["file"]) else
                        f"{row['source']} ({row['file']})"))
    caches = dict.fromkeys(row["cache"] for row in rows)
    measured = {"torchvision": "torchvision (resize 256, centre crop 224)",
                "keras.applications": "keras.applications"}
    lines.append("top-1/top-5: ImageNet validation accuracy as published by " + " and ".join(
        measured[name] for name in dict.fromkeys(row["measured_by"] for row in rows)))
    lines.append(f"caches: {'; '.join(caches)}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = SETTINGS.read()
    names = config.configs or net_configs.config_names(batch_norm_variants=False)
    with errors.user_input():  # the nets judge the names and sizes given
        for name in names:
            net_configs.resolve_config(name)  # a clear error before building anything
    if config.weights:
        rows = published_rows(config.configs, config.batch_norm)
        if not rows:
            print(f"no published weights for {', '.join(names)}: they exist for A, B, D, E and "
                  "their BN variants")
        for row in rows if config.json else ():
            print(json.dumps(row))
        if rows and not config.json:
            print(format_published(rows))
        return 0
    rows = []
    for name in names:
        with errors.user_input():
            row = describe(name, batch_norm=config.batch_norm, input_size=config.input_size,
                           head=config.head, num_classes=config.num_classes,
                           width=config.width, fc_units=config.fc_units)
        if config.json:
            print(json.dumps(row))
        rows.append(row)
    if not config.json:
        narrow = (f", width {config.width:g}, FC-{config.fc_units}"
                  if (config.width, config.fc_units) != (1.0, 4096) else "")
        print(f"VGG configurations at {config.input_size}×{config.input_size}, {config.head} "
              f"head{narrow} (GFLOPs: one image, forward, multiply-add = 2 FLOPs)")
        print(format_table(rows))


def run():
    program.run(main, "vgg-describe")


if __name__ == "__main__":
    run()
