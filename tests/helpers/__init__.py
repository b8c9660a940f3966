"""Plain functions and classes the test folders share (fixtures live in conftest modules).

Test modules import from here, never from a conftest module: pytest imports a conftest itself,
and a second import of it under another name would build a second copy of its fixtures.
"""
