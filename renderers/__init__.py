"""Renderers: the moderngl PBR rasteriser, splat renderers, thumbnails, turntables, the OpenXR target."""
