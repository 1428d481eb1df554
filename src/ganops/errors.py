"""The one exception type a user can cause; entry points turn it into a one-line message."""


class GanopsError(Exception):
    """An error caused by the user's input (params, files, environment): shown without a traceback."""


class ConfigError(GanopsError):
    """params.yaml (or an override) holds a value that is not allowed."""


class DivergenceError(GanopsError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
