"""Model specs, GPU specs and calibration overlays (data files, loaded by ``sim.specs``)."""
