"""Small Keras models for the Keras frontend tests, each with random non-trivial weights.

`CASES` maps a name to a builder `fn(keras) -> keras.Model`; `randomize(model, rng)` replaces
every weight (batch-norm moving variance positive) so a wrong layout or gate order shows up.
"""
import numpy as np


def randomize(model, rng):
    for w in model.weights:
        shape = tuple(w.shape)
        path = w.path
        if "variance" in path:  # BatchNormalization's moving variance, Normalization's variance
            value = rng.uniform(0.5, 2.0, shape)
        elif "gamma" in path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "embeddings" in path:
            value = rng.standard_normal(shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 4
            value = rng.standard_normal(shape) / np.sqrt(fan_in) + (0.1 if len(shape) == 1 else 0)
        w.assign(value.astype("float32"))
    for layer in model.layers:  # Normalization computes from its weights only when finalized
        if hasattr(layer, "finalize_state") and layer.built:
            layer.finalize_state()
    return model


def seq_cnn(k):
    L = k.layers
    return k.Sequential([k.Input((12, 12, 3), name="image"),
                         L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(),
                         L.Conv2D(6, 2, strides=2, padding="same"),  # even kernel, stride 2, 'same'
                         L.BatchNormalization(), L.Flatten(), L.Dense(5, activation="softmax")], name="seq_cnn")


def residual_cnn(k):
    L = k.layers
    x0 = k.Input((10, 10, 4), name="image")
    x = L.Conv2D(4, 3, padding="same", use_bias=False)(x0)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.SeparableConv2D(4, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    x = L.Activation("relu")(L.Add()([x, y]))
    x = L.Conv2D(6, 3, strides=2, padding="same", activation="relu6")(x)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(x0, L.Dense(3)(x), name="residual_cnn")


def depthwise_cnn(k):
    L = k.layers
    return k.Sequential([k.Input((11, 11, 3)),
                         L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same"),
                         L.SeparableConv2D(5, 3, depth_multiplier=2, activation="hard_sigmoid"),
                         L.AveragePooling2D(3, strides=2, padding="same"),
                         L.GlobalMaxPooling2D(keepdims=True), L.Flatten(), L.Dense(4)], name="depthwise_cnn")


def conv1d(k):
    L = k.layers
    return k.Sequential([k.Input((16, 3)),
                         L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="tanh"),
                         L.Conv1D(5, 4, strides=2, padding="same"), L.MaxPooling1D(2),
                         L.AveragePooling1D(2, padding="same"), L.GlobalAveragePooling1D(), L.Dense(2)], name="conv1d")


def activations(k):
    L = k.layers
    x0 = k.Input((6,), name="x")
    h = L.Dense(8)(x0)
    branches = [L.ReLU(max_value=4.0, negative_slope=0.1, threshold=0.5)(h), L.ReLU(negative_slope=0.2)(h),
                L.ReLU(max_value=6.0)(h), L.LeakyReLU(negative_slope=0.2)(h), L.ELU(alpha=0.7)(h),
                L.Softmax()(h)]
    branches += [L.Activation(a)(h) for a in ("gelu", "swish", "softplus", "softsign", "selu", "hard_sigmoid",
                                               "hard_silu", "sigmoid", "tanh", "elu", "mish", "log_softmax")]
    x = L.Concatenate()(branches)
    x = L.Dropout(0.5)(x)
    return k.Model(x0, L.Dense(3, activation="exponential")(x), name="activations")


def multi_io(k):
    L = k.layers
    a, b = k.Input((5,), name="a"), k.Input((5,), name="b")
    shared = L.Dense(4, activation="tanh", name="shared")
    sa, sb = shared(a), shared(b)
    diff = L.Subtract()([sa, sb])
    prod = L.Multiply()([sa, sb, diff])
    avg = L.Average()([sa, sb])
    both = L.Concatenate()([diff, prod, L.Maximum()([sa, sb]), L.Minimum()([sa, avg])])
    return k.Model([a, b], [L.Dense(2, name="head1")(both), L.Dense(3, name="head2")(sa)], name="multi_io")


def reshape_permute(k):
    L = k.layers
    return k.Sequential([k.Input((4, 6)), L.Reshape((2, -1)), L.Permute((2, 1)),
                         L.Dense(3, activation="relu"),  # Dense on a rank-3 input
                         L.Flatten(), L.Dense(2)], name="reshape_permute")


def padded_dilated(k):
    L = k.layers
    return k.Sequential([k.Input((9, 8, 2)), L.ZeroPadding2D(((1, 2), (0, 1))),
                         L.Conv2D(3, 3, dilation_rate=2, use_bias=False, activation="elu"),
                         L.AveragePooling2D(2), L.Conv2D(4, (2, 3), padding="same"),
                         L.MaxPooling2D(2, padding="same"), L.Softmax(axis=-1)], name="padded_dilated")


def embedding_lstm(k):
    L = k.layers
    return k.Sequential([k.Input((7,), dtype="int32", name="tokens"), L.Embedding(12, 5),
                         L.LSTM(6), L.Dense(3, activation="softmax")], name="embedding_lstm")


def stacked_lstm(k):
    L = k.layers
    return k.Sequential([k.Input((6, 4)), L.LSTM(5, return_sequences=True),
                         L.LSTM(4, return_sequences=True, go_backwards=True, activation="relu",
                                recurrent_activation="hard_sigmoid"),
                         L.LSTM(3, go_backwards=True), L.Dense(2)], name="stacked_lstm")


def gru_reset_after(k):
    L = k.layers
    return k.Sequential([k.Input((6, 4)), L.GRU(5, return_sequences=True), L.GRU(3, go_backwards=True)],
                        name="gru_reset_after")


def gru_reset_before(k):
    L = k.layers
    return k.Sequential([k.Input((6, 4)), L.GRU(5, reset_after=False, return_sequences=True, go_backwards=True),
                         L.GRU(3, reset_after=False, use_bias=False)], name="gru_reset_before")


def simple_rnn(k):
    L = k.layers
    return k.Sequential([k.Input((5, 3)), L.SimpleRNN(4, return_sequences=True, activation="relu"),
                         L.SimpleRNN(3, go_backwards=True), L.Dense(2)], name="simple_rnn")


def return_state(k):
    L = k.layers
    x0 = k.Input((5, 3), name="seq")
    seq, h, c = L.LSTM(4, return_sequences=True, return_state=True)(x0)
    out, gh = L.GRU(4, return_state=True)(seq)
    r_seq, rh = L.SimpleRNN(2, return_sequences=True, return_state=True, go_backwards=True)(seq)
    return k.Model(x0, [L.Add()([h, c, gh, out]), r_seq, rh], name="return_state")


def _bidirectional(mode, layer):
    def build(k):
        L = k.layers
        return k.Sequential([k.Input((5, 3)), L.Bidirectional(layer(k, True), merge_mode=mode),
                             L.Bidirectional(layer(k, False), merge_mode=mode), L.Dense(2)],
                            name=f"bidirectional_{mode}")
    build.__name__ = f"bidirectional_{mode}"
    return build


def embedding_bilstm_gru(k):
    L = k.layers
    return k.Sequential([k.Input((8,), dtype="int32", name="tokens"), L.Embedding(16, 6),
                         L.Bidirectional(L.LSTM(5, return_sequences=True)), L.GRU(4),
                         L.Dense(3)], name="embedding_bilstm_gru")


def image_layers(k):
    """Preprocessing and upsampling layers (segmentation heads, keras.applications stems)."""
    L = k.layers
    x0 = k.Input((7, 6, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1)(x0)
    x = L.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.05, 0.06, 0.07])(x)
    x = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = L.Conv2DTranspose(5, 3, strides=2, padding="same")(x)  # 14x12
    from keras.src.applications.convnext import LayerScale  # ConvNeXt's own layer
    x = LayerScale(0.5, 5)(L.Cropping2D(((1, 0), (0, 2)))(x))  # 13x10
    x = L.UpSampling2D((2, 1), interpolation="bilinear")(x)  # 26x10
    x = L.Resizing(9, 15)(x)
    x = L.LayerNormalization()(x)
    x = L.SpatialDropout2D(0.3)(x)
    y = L.Conv2DTranspose(3, 2, strides=3, padding="valid", activation="tanh")(x)  # 27x45
    y = L.UpSampling2D(2)(y)
    y = L.Resizing(11, 20, interpolation="nearest")(y)
    z = L.Conv2DTranspose(4, 4, padding="same")(x)  # even kernel: the odd padding row
    z = L.Conv2DTranspose(2, 3, strides=2, output_padding=1, padding="valid", use_bias=False)(z)
    z = L.LayerNormalization(axis=[1, 2, 3], center=False)(z)
    return k.Model(x0, [y, z], name="image_layers")


def op_literals(k):
    """Keras 3 ops with a number in a functional model (MobileNetV3's hard sigmoid, SE block)."""
    L = k.layers
    x0 = k.Input((6, 6, 3), name="image")
    x = L.Conv2D(4, 3, padding="same")(x0)
    y = L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    se = L.GlobalAveragePooling2D(keepdims=True)(x)
    z = L.Multiply()([x * y, L.Activation("hard_sigmoid")(se)])
    return k.Model(x0, L.Flatten()(2.0 - z), name="op_literals")


def adapted_normalization(k):
    L = k.layers
    return k.Sequential([k.Input((5, 4)), L.Normalization(axis=-1), L.Dense(3),
                         L.Normalization(axis=None, invert=True)], name="adapted_normalization")


def nested_models(k):
    """Models used as layers (keras.applications' ConvNeXt stem): a Sequential stem, a two-input
    functional block called twice (shared weights), a Sequential holding a Sequential, a Dense
    layer both in a sub-model and in the outer model (its weights stored once)."""
    L = k.layers
    stem = k.Sequential([k.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same"), L.BatchNormalization()], name="stem")
    a, b = k.Input((8, 8, 4)), k.Input((8, 8, 4))
    block = k.Model([a, b], L.Dense(4)(L.Concatenate()([L.ReLU()(a), b])), name="block")
    inner = k.Sequential([L.Conv2D(5, 1), L.Activation("tanh")], name="inner")
    shared = L.Dense(3)
    head = k.Sequential([inner, L.GlobalAveragePooling2D(), shared], name="head")
    x0 = k.Input((8, 8, 3), name="image")
    x = stem(x0)
    y = block([x, L.Activation("tanh")(x)])
    y = block([y, x])
    return k.Model(x0, [head(y), y, shared(L.GlobalAveragePooling2D()(L.Conv2D(5, 1)(y)))], name="nested_models")


RNN_CASES = {f.__name__: f for f in (
    embedding_lstm, stacked_lstm, gru_reset_after, gru_reset_before, simple_rnn, return_state, embedding_bilstm_gru,
    _bidirectional("concat", lambda k, seq: k.layers.LSTM(4, return_sequences=seq)),
    _bidirectional("sum", lambda k, seq: k.layers.GRU(4, return_sequences=seq)),
    _bidirectional("mul", lambda k, seq: k.layers.GRU(3, reset_after=False, return_sequences=seq)),
    _bidirectional("ave", lambda k, seq: k.layers.SimpleRNN(4, return_sequences=seq)))}

CNN_CASES = {f.__name__: f for f in (seq_cnn, residual_cnn, depthwise_cnn, conv1d, activations, multi_io,
                                     reshape_permute, padded_dilated, image_layers, adapted_normalization,
                                     op_literals, nested_models)}
CASES = dict(CNN_CASES, **RNN_CASES)


def random_inputs(model, rng):
    """{input name: array} for MODEL (batch 2; integer inputs in [0, 10))."""
    out = {}
    for t in model.inputs:
        shape = (2,) + tuple(t.shape[1:])
        name = t._keras_history.operation.name
        if "int" in str(t.dtype):
            out[name] = rng.integers(0, 10, shape).astype(str(t.dtype))
        else:
            out[name] = rng.standard_normal(shape).astype("float32")
    return out
