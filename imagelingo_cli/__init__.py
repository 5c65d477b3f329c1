"""imagelingo: translate the text inside images with a Gemini image model, in batches."""

__version__ = "0.1.0"
