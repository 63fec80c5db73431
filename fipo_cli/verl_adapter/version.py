"""The verl release fipo is built and tested for: every verl key, hook and file layout in this package is 0.9.1's."""

EXPECTED_VERL = "0.9.1"
