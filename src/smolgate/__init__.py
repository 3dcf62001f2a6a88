"""smolgate: one API endpoint, any AI model — with a vision-language model built in.

Importing smolgate changes nothing in the process: the embedded engine tunes it when it starts
(smolgate.engine.process).
"""

__version__ = "0.1.0"
