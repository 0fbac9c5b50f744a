"""The reparameterisation layer: z = mu + sigma * eps."""

import keras
import numpy as np
from keras import ops

# Where the noise generator's state goes in a saved model.
NOISE_STATE = "noise_state"

# exp(0.5 * 20) ~ 2.2e4 and exp(0.5 * -30) ~ 3e-7: wide enough never to bind in a
# healthy model, narrow enough that exp() cannot overflow float16 or float32.
LOG_VAR_RANGE = (-30.0, 20.0)


def clip_log_var(z_log_var):
    """Clips log-variances to `LOG_VAR_RANGE` so exp() stays finite."""
    return ops.clip(ops.cast(z_log_var, "float32"), *LOG_VAR_RANGE)


@keras.saving.register_keras_serializable(package="keras_resvae")
class Sampling(keras.layers.Layer):
    """Draws z ~ N(mu, exp(log_var)) with the reparameterisation trick.

    z = mu + exp(log_var / 2) * eps, eps ~ N(0, I), so gradients flow to mu and
    log_var. The noise comes from a `keras.random.SeedGenerator`, so a layer built
    with a seed gives the same draws on every run. Log-variances are clipped to
    `LOG_VAR_RANGE`.

    Args:
        seed: int or None. Seed of the noise generator.

    Call args:
        inputs: `[z_mean, z_log_var]`, each `(batch, latent_dim)`.
        deterministic: bool, default False. If True, return `z_mean` (no noise),
            for deterministic reconstructions.

    Example:
    >>> sampling = Sampling(seed=1)
    >>> z = sampling([keras.ops.zeros((4, 8)), keras.ops.zeros((4, 8))])  # (4, 8)

    Reference: Kingma & Welling (2014), "Auto-Encoding Variational Bayes".
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, deterministic=False):
        z_mean, z_log_var = inputs
        z_mean = ops.cast(z_mean, "float32")
        if deterministic:
            return z_mean
        epsilon = keras.random.normal(ops.shape(z_mean), dtype="float32", seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * clip_log_var(z_log_var)) * epsilon

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def compute_output_spec(self, inputs, deterministic=False):
        # Always float32, also under a mixed policy (the noise and the KL need it);
        # Keras would otherwise infer the policy's compute dtype.
        return keras.KerasTensor(inputs[0].shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config

    def save_own_variables(self, store):
        # Keras does not save a SeedGenerator's state: without it, a run resumed
        # from a checkpoint would draw its first epoch's noise again.
        super().save_own_variables(store)
        store[NOISE_STATE] = np.asarray(ops.convert_to_numpy(self.seed_generator.state.value))

    def load_own_variables(self, store):
        # Models saved before the state was (2026-12-07) restart the noise.
        if NOISE_STATE in store:
            state = self.seed_generator.state
            # Wraps, as a C cast does, where backends store the state as uint32 or int32.
            state.assign(np.asarray(store[NOISE_STATE]).astype(state.dtype))
        super().load_own_variables({k: store[k] for k in store.keys() if k != NOISE_STATE})
