"""The raster pipeline: validation facts (``inspect``), multi-tier COGs (``cog``) and storage costs (``costs``)."""
