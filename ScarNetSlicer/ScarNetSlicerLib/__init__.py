"""MRML side of ScarNetSlicer: conversions between Slicer nodes and the engine's types.

Everything here imports only MRML classes (through ``slicer``), vtk, numpy and the pure engine
types (``scarnet.volume``, ``scarnet.labels``, ``scarnet.quantify``, ``scarnet.errors``): never
Qt, the Slicer GUI or torch. That keeps it testable with ``slicer-core`` (a real vtkMRMLScene
without the application) and keeps the module file ``ScarNetSlicer.py`` a thin shell.

Submodules are imported explicitly (``from ScarNetSlicerLib import volume_nodes``) so that
importing the package costs nothing.
"""

MODULE_NAME = "ScarNetSlicer"
#: Prefix of every node attribute this module writes.
ATTRIBUTE_PREFIX = "ScarNetSlicer."
