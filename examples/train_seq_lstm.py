"""Train a small Keras LSTM on a synthetic sequence task and save it.

Task: a sequence of 12 noisy values; the label says whether its first half sums to more than
its second half (order matters, so the model must remember across steps). Writes
examples/seq_lstm.keras and the held-out split examples/seq_test.npz (sequence: float32 [N,12,1], label).

    .venv/bin/python examples/train_seq_lstm.py
"""
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
STEPS = 12


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, STEPS, 1)).astype("float32")
    y = (x[:, :STEPS // 2, 0].sum(1) > x[:, STEPS // 2:, 0].sum(1)).astype("int64")
    return x, y


def build(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((STEPS, 1), name="sequence"), L.LSTM(16),
                             L.Dense(2, activation="softmax", name="probs")], name="seq_lstm")


def main():
    import keras
    keras.utils.set_random_seed(0)
    x_train, y_train = make_data(8000, 0)
    x_test, y_test = make_data(500, 1)
    model = build(keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=25, batch_size=128, verbose=0)
    acc = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    print(f"held-out accuracy {acc:.4f} on {len(y_test)} sequences")
    plain = build(keras)  # uncompiled: the file holds no optimizer state
    plain.set_weights(model.get_weights())
    plain.save(HERE / "seq_lstm.keras")
    np.savez_compressed(HERE / "seq_test.npz", sequence=x_test, label=y_test)  # the model's input name
    print(f"saved {HERE / 'seq_lstm.keras'} and {HERE / 'seq_test.npz'}")


if __name__ == "__main__":
    main()
