"""vgg-evaluate: top-1/top-5 error of a model, or a fusion of models, with the paper's test
protocols (§3.2, §4), printed in the shape of its Tables 3–7.

    vgg-evaluate --model=/models/d-s256 --data_dir=/data/imagenet-tfrecords \
        --protocols=single,dense,multicrop,dense+multicrop --output_dir=/tmp/eval
    vgg-evaluate --model=/models/d-multi --model=/models/e-multi --scales=256,384,512 ...
"""

from absl import app

from vgg_keras.evaluation import config as eval_config

from . import program

# A flag for every setting of an evaluation, as its config declares it; where it computes, the
# same settings as vgg-train's.
SETTINGS = program.Settings(eval_config.EvalConfig, __name__)


check_flags = SETTINGS.check_flags


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = SETTINGS.read()
    from vgg_keras.compute import distribution
    from vgg_keras.evaluation import evaluator
    from vgg_keras.evaluation import results as results_lib

    strategy = distribution.make_strategy(config.distribution_strategy, config.num_gpus,
                                          config.cpu_replicas, config.tpu)
    results = evaluator.evaluate(config, strategy=strategy)
    print(results_lib.format_table(results))
    for path, read in zip(results["settings"]["models"], results["settings"]["model_files"],
                          strict=True):
        if read != path:  # a model dir read through its checkpoint, an export's version
            print(f"{path}: {read}")
    return 0


def run():
    program.run(main, "vgg-evaluate")


if __name__ == "__main__":
    run()
