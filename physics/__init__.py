"""Physics named once: diffraction formulas, phase names and crystal structures.

The lowest layer of the project: the simulators and the analysis both import from here, and
this package imports nothing of the project. :mod:`physics.diffraction` holds the formulas
(Bragg, Scherrer, peak shapes, instrument and strain broadening), :mod:`physics.phases` the
phase names, :mod:`physics.structures` the crystal structures and their reflections
(pymatgen is imported there only).
"""
