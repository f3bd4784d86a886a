"""The one error the codec raises for a stream it cannot (or must not) decode."""

from __future__ import annotations

__all__ = ["CodecError"]


class CodecError(ValueError):
    """A bitstream that is truncated, corrupted, of a newer format, for another model or another
    latent shape, or whose decoded latent fails its checksum. The message names the problem; a
    decoder never returns a latent for such a stream."""
