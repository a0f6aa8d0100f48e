"""areaDetector's HDF5 file layout, shared by whatever writes frames as a camera would."""

#: Where frames live inside each file: what the "AD_HDF5" spec (its handler in
#: area-detector-handlers, and tiled's HDF5 adapter) assume.
FRAMES_DATASET = "/entry/data/data"
