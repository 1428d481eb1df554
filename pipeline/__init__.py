"""DVC stage entry points: each reads the config, calls the library and writes its outputs."""
