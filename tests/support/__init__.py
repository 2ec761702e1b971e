"""What the tests share: node factories, stores that delegate, waiting, the counter actor,
the stats recorder, real servers, claim names. Imported as `from tests.support.X import Y`."""
