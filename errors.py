"""edgec's exception types. Imports nothing, so the runtime can use it on a device."""


class EdgecError(Exception):
    """Base of every error edgec raises for a user's mistake or an unsupported model.

    The message is one readable line naming the model, node/layer, op and what is wrong (line
    breaks that names from a model file bring in are shown as \\n).
    """

    def __init__(self, message="", *args):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"), *args)


class UnsupportedError(EdgecError):
    """The model uses an op, attribute or option edgec does not support."""


class ModelError(EdgecError):
    """The model file is missing, corrupt or inconsistent (bad shapes, dangling values)."""


class InputError(EdgecError):
    """Inputs given at run time do not match the model (names, shapes, dtypes)."""


class ArtifactError(EdgecError):
    """A compiled artifact is corrupt, tampered with, or built for another runtime or machine."""


class TargetError(EdgecError):
    """A target preset is unknown or its tools (cross compiler, NDK, ...) are missing."""


class RemoteError(EdgecError):
    """A remote device could not be reached or refused the artifact."""


class EdgecWarning(UserWarning):
    """A note for the user (a default edgec chose for them, e.g. batch size 1 for a dynamic batch)."""
