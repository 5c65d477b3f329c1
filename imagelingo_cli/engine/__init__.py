"""The batch engine: claims and resume (`claims`), one variation's attempts (`attempts`),
output files (`output_files`), image slots (`slots`), the tally (`tally`), and the run that
ties them (`batch`). It records every step in the store and reports plain events; it knows
neither Typer nor rich."""

from imagelingo_cli.engine.batch import Batch
from imagelingo_cli.engine.jobs import BatchOptions, ImageJob, Translator, VariationSpec

__all__ = ["Batch", "BatchOptions", "ImageJob", "Translator", "VariationSpec"]
