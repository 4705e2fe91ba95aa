"""Input side of vgg_keras: the ImageNet TFRecord schema, the offline converter and the tf.data
training and evaluation inputs (§3.1–3.2 of the paper). Imports no other package of ours.

The dataset functions are imported lazily, so that ``import pipelines`` (and the converter's
worker start-up) does not pay for TensorFlow until a dataset is built.
"""

__all__ = ["make_eval_dataset", "make_train_dataset"]


def __getattr__(name):
    if name in __all__:
        from pipelines import inputs

        return getattr(inputs, name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
