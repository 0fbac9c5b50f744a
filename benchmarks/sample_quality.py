"""Do a model's prior samples look like digits? A classifier's view of them.

Never part of the test suite. A logistic-regression classifier is trained on
the built-in digits' training split (the images `resvae fit --dataset digits`
trains on, labels from scikit-learn), then reads the test digits, the model's
prior samples and, for scale, uniform noise. For each it prints:

- digit score: exp(E[KL(p(y|x) || p(y))]), the Inception Score computed with
  this classifier: 1 when every image gets the same class probabilities, 10
  when each is confidently one digit and the ten are equally common. It
  rewards legibility and variety together. (The classifier's confidence alone
  says little: it calls uniform noise a 4 with 0.8 confidence.)
- classes: how often each digit is the classifier's choice.

It is a classifier on 8x8 scans resized to 28x28, not a perceptual judge:
compare models with it, and look at the sample grids too.

Examples:
    python benchmarks/sample_quality.py runs/hvae runs/basic
    python benchmarks/sample_quality.py runs/hvae --temperature 0.7 --samples 2000
"""

import argparse
import json
import sys

import numpy as np


def train_classifier(seed=0):
    """A logistic regression on the built-in training digits; returns it and its test accuracy."""
    from sklearn.linear_model import LogisticRegression

    from keras_resvae.datasets import load_digits

    (x_train, y_train), (x_test, y_test) = load_digits(with_labels=True)
    classifier = LogisticRegression(C=1.0, max_iter=3000, random_state=seed)
    classifier.fit(_features(x_train), y_train)
    accuracy = float(np.mean(classifier.predict(_features(x_test)) == y_test))
    return classifier, x_test, accuracy


def _features(images):
    images = np.asarray(images, dtype="float32")
    return images.reshape(len(images), -1)


def scores(classifier, images):
    """`{"digit_score", "classes"}` of `images` (pixels in [0, 1])."""
    probabilities = classifier.predict_proba(_features(images))
    marginal = probabilities.mean(axis=0)
    eps = 1e-12
    kl = np.sum(probabilities * (np.log(probabilities + eps) - np.log(marginal + eps)), axis=1)
    classes = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
    return {
        "digit_score": float(np.exp(kl.mean())),
        "classes": classes.tolist(),
    }


def prior_samples(path, count, temperature, seed):
    """`count` prior samples of the model of a run folder or `.keras` file, in [0, 1]."""
    from keras_resvae.callbacks import to_unit_numpy
    from keras_resvae.runs import load_run

    model, _ = load_run(path)
    samples, drawn = [], 0
    # Batches of at most 256, each with its own seed, so memory stays small.
    for batch_seed in range(seed, seed + -(-count // 256)):
        batch = model.sample(min(256, count - drawn), seed=batch_seed, temperature=temperature)
        samples.append(to_unit_numpy(batch, model.output_activation))
        drawn += len(samples[-1])
    return np.concatenate(samples)


def _row(name, result):
    classes = " ".join(f"{count:4d}" for count in result["classes"])
    return f"{name:50s} {result['digit_score']:11.2f}   {classes}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="Run folders or .keras files.")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="Also write the rows here.")
    args = parser.parse_args(argv)

    classifier, x_test, accuracy = train_classifier(args.seed)
    print(f"classifier: logistic regression, test accuracy {accuracy:.3f}")
    print(f"{'images':50s} {'digit score':>11s}   classes 0-9")
    rows = {}
    noise = np.random.default_rng(args.seed).random(x_test.shape, dtype="float32")
    for name, images in (("test digits", x_test), ("uniform noise", noise)):
        rows[name] = scores(classifier, images)
        print(_row(name, rows[name]), flush=True)
    for path in args.runs:
        images = prior_samples(path, args.samples, args.temperature, args.seed)
        name = f"{path} (T={args.temperature:g})"
        rows[name] = scores(classifier, images)
        print(_row(name, rows[name]), flush=True)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"classifier_accuracy": accuracy, "rows": rows}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
