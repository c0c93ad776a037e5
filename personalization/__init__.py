"""The diffusion personalization core: LIPE identity prior and non-rigid editing,
MagiCapture identity + style training. A library with its own CLI
(`python -m personalization`); it never imports Django."""
