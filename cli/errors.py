class CliError(Exception):
    """A failure to report on stderr as it is (no traceback), with a non-zero exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class ApiFailure(CliError):
    """The API answered with an error: its message, code, field and HTTP status."""

    def __init__(self, message: str, http_status: int, code: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.field = field
