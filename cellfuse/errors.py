"""Exceptions raised on bad input. Each message names the file and says what is wrong."""


class CellfuseError(Exception):
    """Base class of every error cellfuse raises on purpose."""


class ImageReadError(CellfuseError):
    """A file could not be read as an image (missing, empty, truncated, not an image)."""


class InvalidImageError(CellfuseError):
    """An image was read but cannot be used (degenerate shape, constant, NaN/inf values)."""


class LabelError(CellfuseError):
    """An instance-label image is invalid (negative ids, float values, shape mismatch)."""


class LayoutError(CellfuseError):
    """An input folder does not follow the expected layout (train/images, train/labels, ...)."""


class SubmissionError(CellfuseError):
    """A submission is missing masks, has wrong shapes, duplicate ids or bad label values."""


class ConfigError(CellfuseError):
    """A configuration is missing a key or holds a value that cannot work."""
