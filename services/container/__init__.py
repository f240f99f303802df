"""Container inventories: listing pages (``listing``), cheap header reads of rasters and vectors (``metadata``),
the inventory table and Parquet file (``inventory``), and summaries (``summary``)."""
