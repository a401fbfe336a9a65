"""A small insights rules package for the compatibility tests (the CCX rule packages are not
published): one parser of the archive's `config/version` and one rule on it."""
