"""p2ptools: a toolkit for paired image-to-image translation (pix2pix) work."""

__version__ = "0.1.0"
