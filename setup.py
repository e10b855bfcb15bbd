"""The one thing pyproject.toml cannot declare: the optional C extension of the heap walk.

memtop/heap/_walk.c is built at install time (``pip install .``, ``make setup``). It is optional:
without a C compiler or the Python headers the build of the extension fails with a warning and
memtop installs anyway, with the pure-Python walk (memtop/heap/native.py says which is in use).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("memtop.heap._walk", sources=["memtop/heap/_walk.c"], optional=True,
              extra_compile_args=["-O2"]),
])
