"""Layers the paper uses that Keras does not ship: LRN (net A-LRN, §2.2/§4.1) and the AlexNet
PCA colour shift of the training augmentation (§3.1).

Both are written with ``keras.ops`` only, so they run on every Keras backend (TensorFlow, JAX,
PyTorch, NumPy) and serialise into ``.keras`` files.
"""

import keras
from keras import ops

# §2.2: "the LRN layer parameters are those of (Krizhevsky et al., 2012)".
LRN_DEPTH_RADIUS = 2  # n = 2 * radius + 1 = 5 neighbouring channels
LRN_BIAS = 2.0  # k
LRN_ALPHA = 1e-4  # α
LRN_BETA = 0.75  # β

# §3.1 "random RGB colour shift (Krizhevsky et al., 2012)". AlexNet did not publish its
# ImageNet pixel statistics; these are the values everyone reuses (fb.resnet.torch), measured
# on pixels scaled to [0, 1]. Rows of the eigenvector matrix are R, G, B; columns are the
# principal components, in the order of the eigenvalues.
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
PCA_COLOR_STDDEV = 0.1  # σ of the per-image component weights (AlexNet §4.1)


@keras.saving.register_keras_serializable(package="vgg_keras")
class LocalResponseNormalization(keras.layers.Layer):
    """Across-channel local response normalisation of AlexNet (§3.3 of Krizhevsky et al.).

    ``b[c] = a[c] / (k + α' · Σ_{c' = c-r}^{c+r} a[c']²) ** β`` over the channel (last) axis,
    with ``α' = α`` by default: AlexNet's formula as printed, and what
    ``tf.nn.local_response_normalization`` computes. Caffe's LRN layer divides α by the window
    size ``n = 2r + 1``; pass ``alpha_over_n=True`` to match weights trained in Caffe. The two
    conventions differ by a factor 5 in the effective α.

    Args:
        depth_radius: r, half the window of channels (n = 2r + 1).
        bias: k.
        alpha: α.
        beta: β.
        alpha_over_n: use Caffe's convention α' = α / n.
    """

    def __init__(
        self,
        depth_radius=LRN_DEPTH_RADIUS,
        bias=LRN_BIAS,
        alpha=LRN_ALPHA,
        beta=LRN_BETA,
        alpha_over_n=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.alpha_over_n = bool(alpha_over_n)

    @property
    def effective_alpha(self):
        """α as it multiplies the sum of squares."""
        n = 2 * self.depth_radius + 1
        return self.alpha / n if self.alpha_over_n else self.alpha

    def call(self, inputs):
        channels = inputs.shape[-1]
        radius = self.depth_radius
        squares = ops.square(inputs)
        pad = [[0, 0]] * (len(inputs.shape) - 1) + [[radius, radius]]
        padded = ops.pad(squares, pad)
        # A sum of 2r + 1 shifted slices: exact, backend-neutral, and cheap for n = 5.
        window_sum = padded[..., 0:channels]
        for offset in range(1, 2 * radius + 1):
            window_sum = window_sum + padded[..., offset : offset + channels]
        return inputs / ops.power(self.bias + self.effective_alpha * window_sum, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            depth_radius=self.depth_radius,
            bias=self.bias,
            alpha=self.alpha,
            beta=self.beta,
            alpha_over_n=self.alpha_over_n,
        )
        return config


@keras.saving.register_keras_serializable(package="vgg_keras")
class PCAColorShift(keras.layers.Layer):
    """AlexNet's "fancy PCA" colour augmentation, applied only when training.

    To every pixel of an image it adds ``V · (α ⊙ λ)``, where ``V`` and ``λ`` are the
    eigenvectors and eigenvalues of the RGB covariance of ImageNet's pixels and ``α ~ N(0, σ²)``
    is drawn once per image. Pixels are expected on a 0–255 scale, so ``λ`` is scaled by 255.
    At inference the layer returns its input unchanged (the same tensor, exactly).

    Args:
        stddev: σ; 0 disables the shift.
        eigenvalues: λ, for pixels on a 0–1 scale.
        eigenvectors: V, rows R, G, B.
        pixel_scale: the value of a full-intensity pixel (255 for uint8 images).
        seed: seed of the layer's random stream.
    """

    def __init__(
        self,
        stddev=PCA_COLOR_STDDEV,
        eigenvalues=IMAGENET_EIGENVALUES,
        eigenvectors=IMAGENET_EIGENVECTORS,
        pixel_scale=255.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.stddev = float(stddev)
        self.eigenvalues = tuple(float(v) for v in eigenvalues)
        self.eigenvectors = tuple(tuple(float(v) for v in row) for row in eigenvectors)
        self.pixel_scale = float(pixel_scale)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.stddev == 0.0:
            return inputs
        batch = ops.shape(inputs)[0]
        alpha = keras.random.normal(
            (batch, 3), stddev=self.stddev, seed=self.seed_generator, dtype=self.compute_dtype
        )
        scaled = ops.convert_to_tensor(
            [v * self.pixel_scale for v in self.eigenvalues], dtype=self.compute_dtype
        )
        vectors = ops.convert_to_tensor(self.eigenvectors, dtype=self.compute_dtype)
        # shift[b, c] = Σ_j V[c, j] · α[b, j] · λ[j]
        shift = ops.matmul(alpha * scaled, ops.transpose(vectors))
        return inputs + ops.reshape(shift, (batch, 1, 1, 3))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            stddev=self.stddev,
            eigenvalues=self.eigenvalues,
            eigenvectors=self.eigenvectors,
            pixel_scale=self.pixel_scale,
            seed=self.seed,
        )
        return config
