"""Input side of vgg_keras: the ImageNet TFRecord schema, the offline converter and the tf.data
training and evaluation inputs (§3.1–3.2 of the paper), over the project's foundation
(``pipelines.foundation``). Imports no other package of ours.
"""
