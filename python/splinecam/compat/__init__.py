"""The original SplineCam API on the engine: ``utils``, ``wrappers``, ``compute`` and
``plot.plot_partition``, importable as ``splinecam.utils``, ``splinecam.wrappers``,
``splinecam.compute`` and ``splinecam.plot`` as before."""
