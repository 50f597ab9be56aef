"""User-facing errors: each names the thing that is wrong and what was expected."""


class XstiltsError(Exception):
    """An error caused by input (params, data, paths) rather than a bug; the CLI prints it without a traceback."""


class ConfigError(XstiltsError):
    """A params key or value is wrong."""


class DataFormatError(XstiltsError):
    """A data file does not have the expected format; the message carries file and line."""

    def __init__(self, path, line: int | None, expected: str, got: str | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        msg = f"{where}: expected {expected}"
        if got is not None:
            shown = got if len(got) <= 120 else got[:117] + "..."
            msg += f", got {shown!r}"
        super().__init__(msg)
        self.path, self.line, self.expected = path, line, expected


def unknown(kind: str, name: str, allowed) -> XstiltsError:
    """The error for a name (task, language, key...) outside its allowed set."""
    allowed = sorted(allowed)
    return XstiltsError(f"unknown {kind} {name!r}; expected one of: {', '.join(map(str, allowed))}")
