"""Exceptions shared by the weight converters."""


class ConversionError(ValueError):
    """One-line, user-facing error raised for any bad or unsupported input file.

    The message always names the offending file and fits on a single line, so a
    command-line tool can print it as is instead of a traceback.
    """
