"""The training floor: the pix2pix loop (``train``), its datasets and sampler (``data``) and the run
page (``run_page``). Built on the model floor; independent of inference."""
