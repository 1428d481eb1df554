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


def one_line(exc: BaseException, limit: int = 0) -> str:
    """An exception's message on one line (SQLAlchemy, urllib and torchvision messages span several).

    With `limit`, only the first line of the message, cut to that many characters: for libraries whose
    later lines are a traceback or SQL rather than the reason.
    """
    text = str(exc).strip()
    if limit:
        text = text.splitlines()[0][:limit] if text else ""
    text = " ".join(text.split())
    return text or type(exc).__name__
