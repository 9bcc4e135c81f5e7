"""nasp's release, in a module of its own: ``nasp/__init__`` re-exports it, and the lowest
layers (``nasp.device`` records it in every result.json) read it here without importing the
package's public face, which sits above everything."""

__version__ = "0.1.0"
