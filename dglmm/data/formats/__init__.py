"""Readers for the data layouts the field uses; each returns a validated :class:`~dglmm.data.dataset.Dataset`."""

from dglmm.data.formats.kgat import read_kgat
from dglmm.data.formats.lattice import read_lattice_json
from dglmm.data.formats.mmrec import read_mmrec
from dglmm.data.formats.recbole import read_recbole

__all__ = ["read_kgat", "read_lattice_json", "read_mmrec", "read_recbole"]
