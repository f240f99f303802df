"""H3 hexagon grids: cells and their antimeridian-safe polygons (``cells``), PostGIS tables loaded with COPY
(``grid``)."""
