"""The hierarchical residual VAE: groups of spatial latents at several resolutions.

The model is a `VAE` whose latent code is the standardised noise of every
group, flattened: eps_l = (z_l - p_mean_l) / p_std_l, with prior N(0, I). Its
decoder maps eps to an image through the top-down network, z_l = p_mean_l +
p_std_l * eps_l, so sampling the prior, decoding, interpolating, the `.keras`
format and export work as for any VAE. Its encoder gives, for each group along
the path of posterior means, the posterior of eps_l: q(z_l | x, z_<l) carried
over to eps coordinates. Training uses the true hierarchical posterior: each
group is sampled given the *sampled* groups above it, and the KL term is the
sum of the groups' analytic KLs, KL(q(z_l | x, z_<l) || p(z_l | z_<l)).
"""

import keras
from keras import ops

from keras_resvae import losses
from keras_resvae.inference import inference
from keras_resvae.sampling import clip_log_var
from keras_resvae.vae import VAE

NETWORKS = ("bottom_up", "start", "priors", "posteriors", "merges", "head")


def _flat(values):
    return ops.reshape(values, (ops.shape(values)[0], -1))


class _TopDown(keras.Model):
    """The cells of the top-down network, shared by the encoder's and the decoder's paths."""

    def __init__(self, networks, **kwargs):
        super().__init__(**kwargs)
        self.start = networks["start"]
        self.priors = list(networks["priors"])
        self.merges = list(networks["merges"])
        self.group_shapes = [tuple(prior.outputs[0].shape[1:]) for prior in self.priors]
        # Its networks are built functional models: so is the path.
        self.built = True

    def _prior(self, index, h, training):
        p_mean, p_log_var, feature = self.priors[index](h, training=training)
        return ops.cast(p_mean, "float32"), clip_log_var(p_log_var), feature


class PosteriorMeanPath(_TopDown):
    """The hierarchical VAE's encoder: images -> `[eps_mean, eps_log_var]`.

    Runs the bottom-up network, then the top-down cells with each group at its
    posterior mean, and returns every group's posterior in eps coordinates:
    mean (q_mean - p_mean) / p_std and log-variance q_log_var - p_log_var,
    flattened and joined, smallest resolution first.
    """

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        self.bottom_up = networks["bottom_up"]
        self.posteriors = list(networks["posteriors"])
        # Every group at a resolution reads the bottom-up features of that resolution.
        feature_sizes = [tuple(output.shape[1:3]) for output in self.bottom_up.outputs]
        self.feature_index = [feature_sizes.index(shape[:2]) for shape in self.group_shapes]

    def walk(self, images, training=False, noise=None):
        """Runs the posterior path; returns the last state and every group's moments.

        Args:
            images: a batch of images.
            training: bool, for the networks.
            noise: None to take each group at its posterior mean, or a function
                `shape -> N(0, I) noise` to sample it given the groups above.

        Returns:
            `(h, groups)`: the top-down state after the last group, and per group
            `(z, q_mean, q_log_var, p_mean, p_log_var)`, float32.
        """
        features = self.bottom_up(images, training=training)
        h = self.start(images)
        groups = []
        for index, posterior in enumerate(self.posteriors):
            p_mean, p_log_var, feature = self._prior(index, h, training)
            group_features = features[self.feature_index[index]]
            d_mean, d_log_var = posterior([h, group_features], training=training)
            # Residual posterior (NVAE): q is parameterised as an offset from p.
            q_mean = p_mean + ops.cast(d_mean, "float32")
            q_log_var = clip_log_var(p_log_var + ops.cast(d_log_var, "float32"))
            z = q_mean
            if noise is not None:
                z = q_mean + ops.exp(0.5 * q_log_var) * noise(ops.shape(q_mean))
            groups.append((z, q_mean, q_log_var, p_mean, p_log_var))
            h = self.merges[index]([h, feature, z], training=training)
        return h, groups

    def call(self, images, training=False):
        _, groups = self.walk(images, training)
        means = [
            _flat((q_mean - p_mean) * ops.exp(-0.5 * p_log_var))
            for _, q_mean, _, p_mean, p_log_var in groups
        ]
        log_vars = [_flat(q_log_var - p_log_var) for _, _, q_log_var, _, p_log_var in groups]
        return ops.concatenate(means, axis=-1), ops.concatenate(log_vars, axis=-1)


class PriorPath(_TopDown):
    """The hierarchical VAE's decoder: eps `(batch, latent_dim)` -> logits.

    Each group is z_l = p_mean_l + p_std_l * eps_l, its prior given the groups
    above; eps ~ N(0, I) is therefore a sample of the model's prior.
    """

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        self.head = networks["head"]

    def call(self, eps, training=False):
        eps = ops.cast(eps, "float32")
        h = self.start(eps)
        offset = 0
        for index, shape in enumerate(self.group_shapes):
            p_mean, p_log_var, feature = self._prior(index, h, training)
            size = shape[0] * shape[1] * shape[2]
            group = ops.reshape(eps[:, offset : offset + size], (-1, *shape))
            offset += size
            z = p_mean + ops.exp(0.5 * p_log_var) * group
            h = self.merges[index]([h, feature, z], training=training)
        return self.head(h, training=training)


@keras.saving.register_keras_serializable(package="keras_resvae")
class HierarchicalVAE(VAE):
    """A hierarchical VAE of residual cells with spatial latent groups (Ladder VAE, NVAE, VDVAE).

    Everything a `VAE` offers works the same (`fit`, `evaluate`, `encode`,
    `decode`, `sample`, `reconstruct`, `interpolate`, saving, export); see the
    module docstring for what its latent code is. Its metrics add `kl_group1`,
    `kl_group2`, ...: each group's KL in nats per image, smallest resolution
    first, which shows where the model puts information.

    Args:
        networks: dict of the networks, as `build_hierarchy` returns them.
        **kwargs: the `VAE`'s arguments (likelihood, output_activation, beta,
            kl_warmup_steps, sigma, seed, architecture, name).

    Example:
    >>> vae = keras_resvae.build_vae("hvae", (32, 32, 3), latent_dim=4, width=0.25)
    >>> vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> vae.fit(x_train, epochs=10, batch_size=64)

    References: Sønderby et al. (2016), "Ladder Variational Autoencoders";
    Vahdat & Kautz (2020), "NVAE"; Child (2021), "Very Deep VAEs".
    """

    hierarchical = True

    def __init__(self, networks, **kwargs):
        missing = [name for name in NETWORKS if name not in networks]
        if missing:
            raise ValueError(f"`networks` lacks {missing}; build them with build_hierarchy.")
        encoder = PosteriorMeanPath(networks, name="encoder")
        decoder = PriorPath(networks, name="decoder")
        super().__init__(encoder, decoder, **kwargs)
        self.group_kl_trackers = [
            keras.metrics.Mean(name=f"kl_group{index}")
            for index in range(1, len(self.decoder.group_shapes) + 1)
        ]

    @property
    def extra_trackers(self):
        return list(getattr(self, "group_kl_trackers", []))

    @property
    def group_shapes(self):
        """`(height, width, channels)` of every latent group, smallest resolution first."""
        return list(self.decoder.group_shapes)

    def _network_shapes(self, encoder, decoder):
        image_shape = tuple(encoder.bottom_up.input_shape[1:])
        latent_dim = sum(h * w * c for h, w, c in decoder.group_shapes)
        return image_shape, latent_dim

    def _output_layer(self):
        return self.decoder.head.layers[-1]

    @inference
    def sample_posterior(self, images, seed=None):
        """One sample of the hierarchical posterior: its logits, each group's KL, its log weight.

        Each group is drawn given the sampled groups above it, as in training.

        Args:
            images: a batch in the model's pixel range.
            seed: int, a `keras.random.SeedGenerator` (successive calls then
                give successive samples), or None. The same seed gives the
                same sample.

        Returns:
            `(logits, group_kls, log_ratio)`: the decoder's logits for the
            sample; one `(batch,)` KL in nats per image for each group,
            smallest first; and `(batch,)` log p(z) - log q(z | x) of the
            sample, summed over the groups (its importance weight, with
            log p(x | z), in `importance_weighted_nll`).

        Example:
        >>> logits, group_kls, log_ratio = vae.sample_posterior(x_test[:64], seed=0)
        """
        images = self.check_images(images)
        logits, group_kls, groups = self._top_down(images, False, sample=True, seed=seed)
        log_ratios = [losses.group_log_ratio(*moments) for moments in groups]
        return logits, group_kls, sum(log_ratios[1:], log_ratios[0])

    def _top_down(self, images, training, sample, seed=None):
        """Logits, every group's KL (nats per image) and moments along the posterior path.

        `sample=True` draws each group given the sampled groups above it (the
        training objective); False takes the posterior means (deterministic).
        """
        noise = None
        if sample:
            generator = self.sampling.seed_generator
            if isinstance(seed, keras.random.SeedGenerator):
                generator = seed
            elif seed is not None:
                generator = keras.random.SeedGenerator(seed)

            def noise(shape):
                return keras.random.normal(shape, dtype="float32", seed=generator)

        h, groups = self.encoder.walk(images, training, noise)
        group_kls = [losses.group_kl(*moments[1:]) for moments in groups]
        return self.decoder.head(h, training=training), group_kls, groups

    def _sampled_logits_and_kl(self, images, training):
        logits, group_kls, _ = self._top_down(images, training, sample=True)
        parts = {tracker.name: kl for tracker, kl in zip(self.group_kl_trackers, group_kls)}
        return logits, ops.stack(group_kls, axis=-1), parts

    @property
    def kl_group_sizes(self):
        """Latent dimensions of each group that `free_bits` floors, smallest resolution first."""
        return [h * w * c for h, w, c in self.group_shapes]

    def call(self, images, training=False):
        # Training: the hierarchical posterior, sampled; otherwise its means, deterministic.
        images = self.check_images(images)
        logits, _, _ = self._top_down(images, training, sample=training)
        return losses.activate(logits, self.output_activation)

    def get_config(self):
        config = self._objective_config()
        encoder, decoder = self.encoder, self.decoder
        networks = {
            "bottom_up": encoder.bottom_up,
            "start": encoder.start,
            "priors": encoder.priors,
            "posteriors": encoder.posteriors,
            "merges": encoder.merges,
            "head": decoder.head,
        }
        config["networks"] = {
            name: (
                [keras.saving.serialize_keras_object(item) for item in value]
                if isinstance(value, list)
                else keras.saving.serialize_keras_object(value)
            )
            for name, value in networks.items()
        }
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["networks"] = {
            name: (
                [keras.saving.deserialize_keras_object(item) for item in value]
                if isinstance(value, list)
                else keras.saving.deserialize_keras_object(value)
            )
            for name, value in config["networks"].items()
        }
        return cls(**config)
