"""The tests of `wes`, as a package that mirrors the library; see `conftest.py` for the map."""
