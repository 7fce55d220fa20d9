"""nucleikit: find, outline and type cell nuclei in microscopy and H&E images.

Importing nucleikit changes nothing outside it: no logging set-up, no
environment variables, no thread settings. Heavy modules (torch) are imported
only by the functions that need them.
"""

__version__ = "0.1.0"
