"""Train a small Keras CNN on scikit-learn's bundled 8x8 digits (no download) and save it.

Writes examples/digits_cnn.keras and the held-out split examples/digits_test.npz (image: float32
[N,8,8,1] in [0,1], label: int64). Needs the keras extra and scikit-learn:

    .venv/bin/python examples/train_digits_cnn.py
"""
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def load_split(seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    return train_test_split(x, digits.target.astype("int64"), test_size=0.25, random_state=seed,
                            stratify=digits.target)


def build(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        L.Conv2D(16, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Dropout(0.2), L.Flatten(), L.Dense(32, activation="relu"),
        L.Dense(10, activation="softmax", name="probs"),
    ], name="digits_cnn")


def main():
    import keras
    keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = load_split()
    model = build(keras)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=20, batch_size=64, verbose=0)
    acc = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    print(f"held-out accuracy {acc:.4f} on {len(y_test)} digits")
    if acc < 0.95:
        raise SystemExit("accuracy below 95%: not saving")
    plain = build(keras)  # uncompiled: the file holds no optimizer state
    plain.set_weights(model.get_weights())
    plain.save(HERE / "digits_cnn.keras")
    np.savez_compressed(HERE / "digits_test.npz", image=x_test, label=y_test)  # the model's input name
    print(f"saved {HERE / 'digits_cnn.keras'} and {HERE / 'digits_test.npz'}")


if __name__ == "__main__":
    main()
