"""Small real media files for the demo and the tests, each with its declared layout."""

from vpo.samples.generator import SampleFile, make_corrupt_samples, make_samples
from vpo.samples.layouts import LAYOUTS, DeclaredTrack, SampleLayout

__all__ = [
    "LAYOUTS",
    "DeclaredTrack",
    "SampleFile",
    "SampleLayout",
    "make_corrupt_samples",
    "make_samples",
]
