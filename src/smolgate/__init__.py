"""smolgate: one API endpoint, any AI model — with a vision-language model built in."""

__version__ = "0.1.0"
