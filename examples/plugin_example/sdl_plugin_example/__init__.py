"""An sdl plug-in from outside sdl: perovskite thin films and a UV-Vis spectrometer.

``sdl_plugin_example.system:PEROVSKITE_FILM`` is the materials system and
``sdl_plugin_example.uvvis:UVVIS`` the instrument with its analysis step; the package's
entry points register them as ``perovskite_film`` and ``uvvis``. Nothing is imported here,
so naming the system does not load ophyd.
"""
