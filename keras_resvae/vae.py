"""The VAE model: encoder + sampling + decoder, trained on the ELBO."""

import contextlib
import numbers

import keras
import numpy as np
from keras import ops

from keras_resvae import inputs, losses
from keras_resvae.compilation import portable_compile_config
from keras_resvae.inference import inference
from keras_resvae.sampling import Sampling, clip_log_var
from keras_resvae.training import backend_steps

# What `free_bits` is, for its error messages (the VAE's and `resvae fit`'s).
FREE_BITS_MEANING = "nats per latent dimension; 0 turns it off"
# Final activations that would squash the decoder's logits before the VAE's own.
SQUASHING_ACTIVATIONS = ("sigmoid", "tanh", "hard_sigmoid", "hard_tanh", "softmax", "softsign")


@keras.saving.register_keras_serializable(package="keras_resvae")
class VAE(keras.Model):
    """A variational autoencoder with swappable encoder and decoder.

    The encoder maps images to `[z_mean, z_log_var]`; the decoder maps a latent
    code `z` to pre-activation logits of the image's shape; the VAE applies the
    output activation (`sigmoid` for data in [0, 1], `tanh` for data in [-1, 1]).
    Keeping the activation here lets the Bernoulli likelihood use logits directly,
    which is exact and numerically stable.

    `fit` minimises the negative ELBO, reconstruction + beta * w(t) * KL, where
    w(t) is a linear KL warm-up over `kl_warmup_steps` optimizer steps (see
    `keras_resvae.losses`). `evaluate` reports the same terms with w = 1.
    Metrics: `loss`, `reconstruction_loss` and `kl_loss` (nats per image, batch
    means), `mse` (per-pixel MSE on the [0, 1] scale, whatever the likelihood) and,
    in training, `skipped_steps`: updates skipped in the epoch because the loss or
    a gradient was not finite, or the gradient norm was above
    `grad_skip_threshold` (the weights are left untouched).

    Calling the model reconstructs: through a posterior sample in training, through
    `z_mean` otherwise, so `predict` is deterministic.

    It is a plain Keras model with these differences, each checked:
    - `compile` takes the optimizer and Keras's execution options; `loss`,
      `metrics` and their weights are refused, because the objective is the
      ELBO (choose `likelihood` and `beta` instead).
    - `fit`, `evaluate` and `predict` take images only: an array, a dict with
      the encoder's input name as its one key, or a dataset of batches. The
      images are checked (shape, dtype, pixel range) before any work starts;
      an explicit `y` other than `x` and `class_weight` are refused, because a
      VAE reconstructs its input. Targets inside a dataset's elements are
      ignored.
    - `sample_weight` weights each image's negative ELBO, reduced as Keras
      reduces a weighted loss: the batch mean of weight x value.
    - The decoder returns logits, so `vae.decoder.predict(z)` is not an image:
      use `vae.decode(z)`.
    - `encode`, `decode`, `reconstruct`, `sample` and `interpolate` are
      inference: they record no gradients and return detached tensors on
      every backend (on PyTorch they run under `torch.no_grad`). For gradients,
      call the model itself or `vae.encoder` / `vae.decoder`.

    Args:
        encoder: `keras.Model`, images `(H, W, C)` -> `[z_mean, z_log_var]`.
        decoder: `keras.Model`, `z` -> logits `(H, W, C)`: its last layer must
            not apply `sigmoid` or `tanh` (the VAE applies `output_activation`).
        likelihood: `"gaussian_learned"` (sigma-VAE, the default), `"gaussian"`
            (fixed `sigma`) or `"bernoulli"`. The calibrated decoder of
            sigma-VAE gave 4-7x lower test MSE than Bernoulli on the built-in
            digits (see README).
        output_activation: `"sigmoid"` or `"tanh"`. Default `"sigmoid"`.
        beta: float >= 0, weight of the KL term. Default 1.
        kl_warmup_steps: int >= 0, steps of linear KL warm-up. Default 0 (none).
        sigma: float > 0, the fixed Gaussian sigma on the [0, 1] pixel scale.
            Used only by `likelihood="gaussian"`. Default 0.1.
        seed: int or None, seed of the sampling noise.
        architecture: optional JSON-serialisable dict describing how the networks
            were built (set by `build_vae`; informational).
        free_bits: float >= 0, nats per latent dimension. The training
            objective charges each latent group (each unit of a flat VAE) at
            least this much KL on average over the batch, so no group gains by
            collapsing onto the prior (`losses.free_bits_kl`). The metrics keep
            the true KL. Default 0 (off).
        grad_skip_threshold: float > 0 or None. A training step whose gradient
            norm (of the unscaled loss, over every trainable weight) is above
            it is skipped, weights and optimizer state untouched, and counted in
            `skipped_steps` (as VDVAE does against rare huge updates). Default
            None (off).

    Example:
    >>> vae = keras_resvae.build_vae("basic", (28, 28, 1), latent_dim=2)
    >>> vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> vae.fit(x_train, epochs=5, batch_size=128, validation_data=x_test)
    >>> images = vae.sample(16, seed=0)

    Reference: Kingma & Welling (2014), "Auto-Encoding Variational Bayes".
    """

    # A flat VAE: one latent vector, q(z|x) from the encoder alone.
    hierarchical = False

    def __init__(
        self,
        encoder,
        decoder,
        likelihood="gaussian_learned",
        output_activation="sigmoid",
        beta=1.0,
        kl_warmup_steps=0,
        sigma=0.1,
        seed=None,
        architecture=None,
        free_bits=0.0,
        grad_skip_threshold=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        losses.check_likelihood(likelihood)
        losses.check_output_activation(output_activation)
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or beta < 0:
            raise ValueError(f"`beta` must be a number >= 0. Received: beta={beta!r}")
        if (
            isinstance(kl_warmup_steps, bool)
            or not isinstance(kl_warmup_steps, numbers.Integral)
            or kl_warmup_steps < 0
        ):
            raise ValueError(
                "`kl_warmup_steps` must be an integer >= 0. "
                f"Received: kl_warmup_steps={kl_warmup_steps!r}"
            )
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not sigma > 0:
            raise ValueError(f"`sigma` must be a number > 0. Received: sigma={sigma!r}")
        free_bits = inputs.check_non_negative(free_bits, "free_bits", FREE_BITS_MEANING)
        grad_skip_threshold = inputs.check_positive_or_none(
            grad_skip_threshold, "grad_skip_threshold", "a gradient norm"
        )
        self.image_shape, self.latent_dim = self._network_shapes(encoder, decoder)

        self.encoder = encoder
        self.decoder = decoder
        self.sampling = Sampling(seed=seed, name="sampling")
        self.likelihood = likelihood
        self.output_activation = output_activation
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.sigma = float(sigma)
        self.seed = seed
        self.architecture = architecture
        self.free_bits = free_bits
        self.grad_skip_threshold = grad_skip_threshold

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.mse_tracker = keras.metrics.Mean(name="mse")
        self.skipped_tracker = keras.metrics.Sum(name="skipped_steps")
        self._steps = backend_steps()
        self.built = True

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.reconstruction_tracker,
            self.kl_tracker,
            self.mse_tracker,
            self.skipped_tracker,
            *self.extra_trackers,
        ]

    @property
    def extra_trackers(self):
        """Trackers of the model's own terms beyond the ELBO's (none for a flat VAE)."""
        return []

    def _network_shapes(self, encoder, decoder):
        """`(image_shape, latent_dim)`, once encoder and decoder are checked to fit."""
        return _check_networks(encoder, decoder)

    # ----------------------------------------------------------------- inference

    def check_images(self, images):
        """Checks `images` against the model and returns them as a float32 tensor.

        Accepts a batch `(batch, H, W, C)`, or a dict with the encoder's input
        name as its one key. NumPy arrays are also checked for dtype and pixel
        range; inside a traced step only the shape can be checked, and sizes
        the trace leaves open are fixed to the model's.
        """
        images = inputs.unwrap_images(images, self.input_names)
        if isinstance(images, (np.ndarray, list)):
            inputs.check_array(images, self.image_shape, self.output_activation)
        images = ops.convert_to_tensor(images)
        try:
            shape = tuple(images.shape)
        except (TypeError, ValueError):  # TensorFlow: a shape of unknown rank
            shape = None
        if shape is not None:
            inputs.check_shape(shape, self.image_shape)
        if shape is None or None in shape[1:]:
            images = ops.reshape(images, (-1, *self.image_shape))
        return ops.cast(images, "float32")

    @property
    def input_names(self):
        """The encoder's input names: the key a dict of images may use."""
        names = [getattr(tensor, "name", None) for tensor in getattr(self.encoder, "inputs", [])]
        return [name for name in names if name] or ["images"]

    @inference
    def encode(self, images, training=False):
        """Images -> `(z_mean, z_log_var)`, float32, log-variance clipped.

        Example:
        >>> z_mean, z_log_var = vae.encode(x_test[:8])
        """
        return self._encode_checked(self.check_images(images), training)

    def _encode_checked(self, images, training):
        z_mean, z_log_var = self.encoder(images, training=training)
        return ops.cast(z_mean, "float32"), clip_log_var(z_log_var)

    @inference
    def decode(self, z, training=False):
        """Latent codes `(batch, latent_dim)` -> images in the model's pixel range.

        Use this rather than `vae.decoder(z)`: the decoder returns logits, and
        the VAE applies `output_activation` here.

        Example:
        >>> images = vae.decode(keras.random.normal((8, vae.latent_dim)))
        """
        return self._decode(z, training)

    def _decode(self, z, training):
        return losses.activate(self.decoder(z, training=training), self.output_activation)

    @inference
    def reconstruct(self, images):
        """Deterministic reconstructions through the posterior mean.

        Example:
        >>> reconstructions = vae.reconstruct(x_test[:8])
        """
        z_mean, _ = self.encode(images)
        return self.decode(z_mean)

    @inference
    def sample(self, n, seed=None, temperature=1.0):
        """Decodes `n` draws from the prior N(0, I), its spread scaled by `temperature`.

        Args:
            n: int. Number of images.
            seed: int or None. The same seed gives the same images.
            temperature: float >= 0. The prior's standard deviation is
                multiplied by it: below 1 trades diversity for typical images
                (a hierarchical VAE scales every group's noise, as NVAE and
                VDVAE sample); 0 decodes the prior's mean. Default 1 (the
                model's own prior).

        Example:
        >>> images = vae.sample(16, seed=0)  # (16, H, W, C)
        >>> typical = vae.sample(16, seed=0, temperature=0.7)
        """
        n = inputs.check_count(n, "n")
        temperature = inputs.check_non_negative(
            temperature, "temperature", "1 samples the prior itself"
        )
        z = keras.random.normal((n, self.latent_dim), seed=seed)
        return self.decode(z * temperature)

    @inference
    def interpolate(self, images_a, images_b, steps=8):
        """Decodes straight lines between the posterior means of two images.

        Args:
            images_a: one image `(H, W, C)` or a batch `(B, H, W, C)`.
            images_b: same shape as `images_a`.
            steps: int >= 2. Points on each line, both ends included.

        Returns:
            `(steps, H, W, C)` for single images, `(B, steps, H, W, C)` for batches.

        Example:
        >>> frames = vae.interpolate(x_test[0], x_test[1], steps=10)
        """
        steps = inputs.check_count(steps, "steps", minimum=2)
        single = len(ops.shape(images_a)) == 3
        if single:
            images_a, images_b = images_a[None], images_b[None]
        z_a, _ = self.encode(images_a)
        z_b, _ = self.encode(images_b)
        t = ops.reshape(ops.linspace(0.0, 1.0, int(steps)), (1, -1, 1))
        z = (1.0 - t) * z_a[:, None, :] + t * z_b[:, None, :]
        frames = self.decode(ops.reshape(z, (-1, self.latent_dim)))
        frames = ops.reshape(frames, (-1, int(steps), *self.image_shape))
        return frames[0] if single else frames

    def initialize_output_bias(self, images):
        """Starts the decoder's output at the data's mean pixel (per channel).

        Sets the bias of the decoder's last layer so that, before training, it
        outputs the mean of `images` per channel instead of mid-grey. Otherwise
        the first updates all push the output the same way (towards the
        background). A ResNet decoder without batch norm then saturated its
        sigmoid, where a Gaussian likelihood has no gradient left, and stayed at
        MSE 0.10 on the digits; with this start it trained (see README).

        Args:
            images: a sample of training images in the model's pixel range.

        Example:
        >>> vae.initialize_output_bias(x_train[:512])
        """
        layer = self._output_layer()
        bias = getattr(layer, "bias", None)
        if bias is None:
            raise ValueError(f"The decoder's last layer ({layer.name}) has no bias to initialise.")
        images = self.check_images(images)
        unit = ops.convert_to_numpy(losses.to_unit_interval(images, self.output_activation))
        mean = np.clip(unit.reshape(-1, unit.shape[-1]).mean(axis=0), 1e-3, 1 - 1e-3)
        logits = np.log(mean / (1 - mean)) / losses.logit_scale(self.output_activation)
        bias.assign(logits.astype(bias.dtype))

    def _output_layer(self):
        """The layer that makes the decoder's logits."""
        return self.decoder.layers[-1]

    def call(self, images, training=False):
        # Not through `encode`/`decode`: those record no gradients, and a call may be trained.
        z_mean, z_log_var = self._encode_checked(self.check_images(images), training)
        z = self.sampling([z_mean, z_log_var], deterministic=not training)
        return self._decode(z, training)

    # ------------------------------------------------------------------ training

    def compute_elbo(self, images, step=None, training=False, sample_weight=None):
        """The objective and its terms for one batch (backend-agnostic).

        Args:
            images: a batch in the model's pixel range.
            step: completed optimizer steps, for the KL warm-up; None means no
                warm-up (weight 1), as in evaluation.
            training: bool, passed to the networks (batch norm, dropout).
            sample_weight: optional `(batch,)` weights of the images. Every term
                is then the batch mean of weight x value, as Keras reduces a
                weighted loss, and the learned sigma of `gaussian_learned` is
                the weighted root MSE.

        Returns:
            `(loss, terms)`: the scalar loss (batch mean of the weighted negative
            ELBO, its KL term floored per group by `free_bits` when that is set,
            plus any layer regularisation losses) and a dict of scalar
            `reconstruction_loss`, `kl_loss` and `mse`, and the parts of the KL
            a model tracks (`kl_group1`, ... for a `HierarchicalVAE`).
        """
        images = self.check_images(images)
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        logits, group_kls, extra_kl = self._sampled_logits_and_kl(images, training)
        kl = ops.sum(group_kls, axis=-1)
        reconstruction = losses.reconstruction_nll(
            self.likelihood,
            images,
            logits,
            self.output_activation,
            self.sigma,
            sample_weight=sample_weight,
        )
        kl_weight = self.beta
        if step is not None:
            kl_weight = kl_weight * losses.kl_warmup_weight(step, self.kl_warmup_steps)
        if self.free_bits > 0:
            kl_term = losses.free_bits_kl(
                group_kls, self.kl_group_sizes, self.free_bits, sample_weight
            )
            loss = losses.weighted_mean(reconstruction, sample_weight) + kl_weight * kl_term
        else:
            loss = losses.weighted_mean(
                losses.negative_elbo(reconstruction, kl, kl_weight), sample_weight
            )
        if self.losses:
            loss = loss + ops.cast(ops.sum(self.losses), "float32")
        terms = {
            "reconstruction_loss": losses.weighted_mean(reconstruction, sample_weight),
            "kl_loss": losses.weighted_mean(kl, sample_weight),
            "mse": losses.weighted_mean(
                losses.pixel_mse(images, logits, self.output_activation), sample_weight
            ),
        }
        for name, value in extra_kl.items():
            terms[name] = losses.weighted_mean(value, sample_weight)
        return loss, terms

    def _sampled_logits_and_kl(self, images, training):
        """One posterior sample's logits, the KL of every latent group, and any parts of that KL.

        Returns:
            `(logits, group_kls, parts)`: `group_kls` is `(batch, groups)` nats
            per image, one column per entry of `kl_group_sizes` (each unit of a
            flat VAE); `parts` maps the names of `extra_trackers` to `(batch,)`
            terms (empty for a flat VAE).
        """
        z_mean, z_log_var = self._encode_checked(images, training)
        z = self.sampling([z_mean, z_log_var])
        logits = self.decoder(z, training=training)
        return logits, losses.kl_per_dimension(z_mean, z_log_var), {}

    @property
    def kl_group_sizes(self):
        """Latent dimensions of each group that `free_bits` floors: every unit of a flat VAE."""
        return [1] * self.latent_dim

    def train_step(self, *args):
        return self._steps.train_step(self, *args)

    def test_step(self, *args):
        return self._steps.test_step(self, *args)

    # ------------------------------------------------- the Keras training API

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        **kwargs,
    ):
        """Keras's `compile`, without `loss` and `metrics`: the objective is the ELBO.

        Args:
            optimizer: as in Keras.
            **kwargs: Keras's execution options (`jit_compile`,
                `steps_per_execution`, `run_eagerly`, `auto_scale_loss`).

        Raises:
            ValueError: for `loss`, `loss_weights`, `metrics` or
                `weighted_metrics`, which this model would otherwise ignore.

        Example:
        >>> vae.compile(optimizer=keras.optimizers.Adam(3e-4))
        """
        if loss is not None or loss_weights is not None:
            raise ValueError(
                "A VAE trains on its own objective, the negative ELBO, so "
                "`compile(loss=...)` would be ignored. Choose the reconstruction term with "
                f"`likelihood` {list(losses.LIKELIHOODS)} and the KL weight with `beta` "
                f"when building the VAE. Received: loss={loss!r}, loss_weights={loss_weights!r}"
            )
        if metrics is not None or weighted_metrics is not None:
            raise ValueError(
                "A VAE reports its own metrics (loss, reconstruction_loss, kl_loss, mse, "
                "skipped_steps), so `compile(metrics=...)` would be ignored. For image "
                "quality use keras_resvae.metrics.evaluate_vae(vae, images) (MSE, PSNR, "
                "SSIM, blur, bits/dim) or a callback. "
                f"Received: metrics={metrics!r}, weighted_metrics={weighted_metrics!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)
        optimizer = getattr(self, "optimizer", None)
        if (
            kwargs.get("auto_scale_loss", True)
            and optimizer is not None
            and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            and self._computes_in_float16()
        ):
            # Keras adds loss scaling only under a global mixed_float16 policy. A
            # loaded model has float16 layers without it; unscaled, its gradients
            # underflow, and its saved loss-scale optimizer state would not load.
            self.optimizer = keras.optimizers.LossScaleOptimizer(
                optimizer, name="loss_scale_optimizer"
            )

    def _computes_in_float16(self):
        return any(
            layer.dtype_policy.compute_dtype == "float16"
            for network in (self.encoder, self.decoder)
            for layer in [network, *network.layers]
        )

    def compile_from_config(self, config):
        # Keras only calls compile() for models that do not override it.
        config = keras.saving.deserialize_keras_object(portable_compile_config(config))
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        validation_freq=1,
    ):
        """Keras's `fit`, with the images checked first (see the class docstring).

        Example:
        >>> vae.fit(x_train, validation_data=x_test, epochs=10, batch_size=64)
        """
        x = self._checked_data(x, y, "fit")
        if class_weight is not None:
            raise ValueError(
                "A VAE has no classes, so `class_weight` does not apply. Weight the images "
                "with `sample_weight` (one weight per image)."
            )
        if validation_data is not None:
            validation_data = self._checked_validation_data(validation_data)
        with self._pipeline_errors():
            return super().fit(
                x,
                _weight_carrier(x, sample_weight),
                batch_size=batch_size,
                epochs=epochs,
                verbose=verbose,
                callbacks=callbacks,
                validation_split=validation_split,
                validation_data=validation_data,
                shuffle=shuffle,
                sample_weight=sample_weight,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps_per_epoch,
                validation_steps=validation_steps,
                validation_batch_size=validation_batch_size,
                validation_freq=validation_freq,
            )

    def evaluate(
        self,
        x=None,
        y=None,
        batch_size=None,
        verbose="auto",
        sample_weight=None,
        steps=None,
        callbacks=None,
        return_dict=False,
        **kwargs,
    ):
        """Keras's `evaluate`, with the images checked first.

        Example:
        >>> vae.evaluate(x_test, return_dict=True)
        """
        # fit's validation passes its data again each epoch, already checked; Keras
        # then reads its cached iterator and ignores x.
        if x is not None and not kwargs.get("_use_cached_eval_dataset"):
            x = self._checked_data(x, y, "evaluate")
            y = _weight_carrier(x, sample_weight)
        with self._pipeline_errors():
            return super().evaluate(
                x,
                y,
                batch_size=batch_size,
                verbose=verbose,
                sample_weight=sample_weight,
                steps=steps,
                callbacks=callbacks,
                return_dict=return_dict,
                **kwargs,
            )

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Keras's `predict`: deterministic reconstructions, with the images checked first.

        Example:
        >>> reconstructions = vae.predict(x_test, batch_size=256)
        """
        x = self._checked_data(x, None, "predict")
        with self._pipeline_errors():
            return super().predict(
                x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks
            )

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """Keras's `train_on_batch`, with the images checked first."""
        if class_weight is not None:
            raise ValueError("A VAE has no classes: use `sample_weight`, one weight per image.")
        x = self._checked_data(x, y, "train_on_batch")
        return super().train_on_batch(
            x, _weight_carrier(x, sample_weight), sample_weight, return_dict=return_dict
        )

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Keras's `test_on_batch`, with the images checked first."""
        x = self._checked_data(x, y, "test_on_batch")
        return super().test_on_batch(
            x, _weight_carrier(x, sample_weight), sample_weight, return_dict=return_dict
        )

    def predict_on_batch(self, x):
        """Keras's `predict_on_batch`, with the images checked first."""
        return super().predict_on_batch(self._checked_data(x, None, "predict_on_batch"))

    def _checked_data(self, x, y, method):
        """`x` checked (arrays whole, datasets batch by batch); an explicit `y` refused."""
        if y is not None and y is not x:
            raise ValueError(
                f"A VAE learns to reconstruct its input, so `{method}` takes no targets `y`. "
                f"Call {method}(x). To map inputs to other images (denoising), train "
                "on the targets, or write a model for that task."
            )
        x = inputs.unwrap_images(x, self.input_names)
        if inputs.is_array_like(x):
            inputs.check_array(
                ops.convert_to_numpy(x) if not isinstance(x, (np.ndarray, list)) else x,
                self.image_shape,
                self.output_activation,
            )
            return x
        return inputs.checked_dataset(x, self.image_shape, self.output_activation, self.input_names)

    def _checked_validation_data(self, data):
        if not isinstance(data, tuple):
            return self._checked_data(data, None, "fit")
        images, targets, sample_weight = (*data, None, None)[:3]
        if targets is not None and targets is not images:
            raise ValueError(
                "A VAE learns to reconstruct its input, so `validation_data` takes no "
                "targets: pass validation_data=x_test (or (x_test, None, sample_weight))."
            )
        images = self._checked_data(images, None, "fit")
        if sample_weight is None:
            return (images,)
        return (images, _weight_carrier(images, sample_weight), sample_weight)

    @contextlib.contextmanager
    def _pipeline_errors(self):
        """Keeps the model whole on error, and makes a failed pipeline check one `ValueError`."""
        try:
            with self._steps.state_kept_on_error(self):
                yield
        except Exception as error:
            translated = inputs.translate_pipeline_error(
                error, self.image_shape, self.output_activation
            )
            if translated is None:
                raise
            raise translated from None

    # ------------------------------------------------------------- serialisation

    def get_config(self):
        return {
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            **self._objective_config(),
        }

    def _objective_config(self):
        """Every constructor argument but the networks."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "likelihood": self.likelihood,
            "output_activation": self.output_activation,
            "beta": self.beta,
            "kl_warmup_steps": self.kl_warmup_steps,
            "sigma": self.sigma,
            "seed": self.seed,
            "architecture": self.architecture,
            "free_bits": self.free_bits,
            "grad_skip_threshold": self.grad_skip_threshold,
        }

    def get_compile_config(self):
        # Portable: a file saved under one backend compiles and trains under the
        # others (see `compilation.portable_compile_config`).
        return portable_compile_config(
            super().get_compile_config(), auto_jit_compile=self._resolve_auto_jit_compile()
        )

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


def _weight_carrier(images, sample_weight):
    """Placeholder targets that make Keras keep `sample_weight` (None without weights).

    Keras packs `(x, None, sample_weight)` as `(x,)`, dropping the weights when
    there are no targets; a VAE has none, so it gets one zero per image.
    """
    if sample_weight is None:
        return None
    if not inputs.is_array_like(images):
        raise ValueError(
            "`sample_weight` goes with array inputs. A dataset carries its weights in "
            "its elements: (images, placeholder, weights), e.g. "
            "tf.data.Dataset.from_tensor_slices((x, tf.zeros(len(x)), w))."
        )
    return np.zeros((len(sample_weight),), "float32")


def _check_networks(encoder, decoder):
    """Checks that encoder and decoder fit together; returns (image_shape, latent_dim)."""
    for name, network in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(network, keras.Model):
            raise ValueError(f"`{name}` must be a keras.Model. Received: {type(network).__name__}")
    image_shape = tuple(encoder.input_shape[1:])
    encoder_outputs = encoder.output_shape
    if not (
        isinstance(encoder_outputs, (list, tuple))
        and len(encoder_outputs) == 2
        and all(isinstance(s, (list, tuple)) for s in encoder_outputs)
    ):
        raise ValueError(
            "`encoder` must return two tensors, [z_mean, z_log_var]. "
            f"Received output shape: {encoder_outputs}"
        )
    latent_dim = encoder_outputs[0][-1]
    if tuple(decoder.input_shape[1:]) != (latent_dim,):
        raise ValueError(
            f"`decoder` must take latent codes of shape (batch, {latent_dim}) to match "
            f"the encoder. Received: decoder input shape {decoder.input_shape}"
        )
    if tuple(decoder.output_shape[1:]) != image_shape:
        raise ValueError(
            f"`decoder` must return images of the encoder's input shape {image_shape}. "
            f"Received: decoder output shape {decoder.output_shape}"
        )
    _check_decoder_returns_logits(decoder)
    return image_shape, latent_dim


def _output_layer(network):
    """The layer that produces a network's (first) output, if it can be found."""
    outputs = getattr(network, "outputs", None)
    history = getattr(outputs[0], "_keras_history", None) if outputs else None
    if history is not None:
        return history.operation
    layers = getattr(network, "layers", None)
    return layers[-1] if layers else None


def _check_decoder_returns_logits(decoder):
    layer = _output_layer(decoder)
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    if name in SQUASHING_ACTIVATIONS:
        raise ValueError(
            f"The decoder's output layer {layer.name!r} applies {name!r}, but the VAE applies "
            "`output_activation` to the decoder's output itself, so it would be applied "
            f"twice. Build {layer.name!r} with activation=None: the decoder returns logits."
        )
