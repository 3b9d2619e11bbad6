"""The one exception of the model build: a message that tells the operator what to do."""


class ModelBuildError(Exception):
    """The models cannot be built as the manifest says (bad hash, missing client, ...)."""
